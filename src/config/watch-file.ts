import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { systemClock, type Clock, type Timer } from '../time.js';

export interface FileWatch {
  /** True while a change was noticed and its debounced `onChange` has not run yet. */
  readonly pending: boolean;
  /** Runs a pending debounced `onChange` now (nothing when none is pending). */
  flush(): void;
  /** Stops watching. Idempotent. */
  close(): void;
}

export interface WatchFileOptions {
  /** Quiet time after the last notification before `onChange` runs (default 200 ms). */
  debounceMs?: number | undefined;
  /** Time for the debounce (default: the system clock). */
  clock?: Clock | undefined;
}

/**
 * Calls `onChange` (debounced) when `file` is written, replaced by rename (editors, atomic
 * writers, ConfigMap symlink swaps) or re-created. Watches the directory, so the file may be
 * absent for a while.
 */
export function watchFile(file: string, onChange: () => void, opts: WatchFileOptions = {}): FileWatch {
  const debounceMs = opts.debounceMs ?? 200;
  const clock = opts.clock ?? systemClock;
  const name = basename(file);
  let timer: Timer | undefined;
  let closed = false;
  const run = (): void => {
    timer = undefined;
    if (!closed) onChange();
  };
  const fire = (): void => {
    if (closed) return;
    timer?.cancel();
    timer = clock.setTimeout(run, debounceMs);
  };
  const watcher: FSWatcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
    // Kubernetes ConfigMaps swap a "..data" symlink: any change in the directory may matter then.
    if (changed === null || changed === name || String(changed).startsWith('..')) fire();
  });
  watcher.on('error', () => undefined);
  return {
    get pending() {
      return timer !== undefined;
    },
    flush() {
      if (!timer) return;
      timer.cancel();
      run();
    },
    close() {
      if (closed) return;
      closed = true;
      timer?.cancel();
      timer = undefined;
      watcher.close();
    },
  };
}
