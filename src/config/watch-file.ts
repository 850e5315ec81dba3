import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface FileWatch {
  /** Stops watching. Idempotent. */
  close(): void;
}

/**
 * Calls `onChange` (debounced) when `file` is written, replaced by rename (editors, atomic
 * writers, ConfigMap symlink swaps) or re-created. Watches the directory, so the file may be
 * absent for a while.
 */
export function watchFile(file: string, onChange: () => void, opts: { debounceMs?: number } = {}): FileWatch {
  const debounceMs = opts.debounceMs ?? 200;
  const name = basename(file);
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const fire = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      if (!closed) onChange();
    }, debounceMs);
  };
  const watcher: FSWatcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
    // Kubernetes ConfigMaps swap a "..data" symlink: any change in the directory may matter then.
    if (changed === null || changed === name || String(changed).startsWith('..')) fire();
  });
  watcher.on('error', () => undefined);
  return {
    close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      watcher.close();
    },
  };
}
