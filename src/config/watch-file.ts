import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { MeshauthError } from '../errors.js';
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
  /**
   * Longest wait from the first notification of a burst to `onChange` (default 5 × debounceMs): a
   * directory whose entries change without a quiet time (a busy writer, a process touching the
   * file in a loop) still has the file read this often, instead of never.
   */
  maxWaitMs?: number | undefined;
  /** Time for the debounce (default: the system clock). */
  clock?: Clock | undefined;
}

/**
 * Calls `onChange` (debounced) when `file` is written, replaced by rename (editors, atomic
 * writers, ConfigMap symlink swaps) or re-created. Watches the directory, so the file may be
 * absent for a while. A Kubernetes ConfigMap volume is updated by the kubelet by renaming a new
 * `..data` symlink over the old one (`file` -> `..data/file`); entries of the directory whose name
 * starts with ".." count as changes for that reason. `onChange` runs after a quiet time of
 * `debounceMs`, and at most `maxWaitMs` after the first change of a burst that has none.
 *
 * Not seen: edits to the target of a symlink that points into another directory, a ConfigMap key
 * mounted with subPath (the kubelet never updates it), and anything after the directory itself is
 * removed or replaced (the watch ends with it).
 */
export function watchFile(file: string, onChange: () => void, opts: WatchFileOptions = {}): FileWatch {
  const debounceMs = opts.debounceMs ?? 200;
  const maxWaitMs = opts.maxWaitMs ?? 5 * debounceMs;
  const clock = opts.clock ?? systemClock;
  const name = basename(file);
  let timer: Timer | undefined;
  /** When the first notification of the pending burst came (undefined: none pending). */
  let burstAtMs: number | undefined;
  let closed = false;
  const run = (): void => {
    timer = undefined;
    burstAtMs = undefined;
    if (!closed) onChange();
  };
  const fire = (): void => {
    if (closed) return;
    const now = clock.now();
    burstAtMs ??= now;
    timer?.cancel();
    timer = clock.setTimeout(run, Math.max(0, Math.min(debounceMs, burstAtMs + maxWaitMs - now)));
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
      burstAtMs = undefined;
      watcher.close();
    },
  };
}

/** The outcome of one reload: the file's content was taken (or equalled the current one), or not. */
export type ReloadResult = { ok: true } | { ok: false; error: Error };

/**
 * What one reload did, for metrics: `applied` (new content taken), `unchanged` (the file equals the
 * current content), `failed` (the file was refused, or taken but a listener failed to act on it).
 */
export type ReloadOutcome = 'applied' | 'unchanged' | 'failed';

export interface FileFollower {
  /**
   * Reads the file now, as a change notification does: a good file goes to `apply`, a bad one to
   * `rejected` and is returned; the previous value then stays.
   */
  reload(): ReloadResult;
  /**
   * Tells the follower that the content in use has since been acted on (e.g. a later map resync
   * for another reason succeeded): a file whose content was taken but not acted on stops failing.
   * Nothing when the file is refused or was acted on.
   */
  acted(): void;
  /** Stops watching. Idempotent. */
  close(): void;
}

export interface FollowFileOptions<T> extends WatchFileOptions {
  /**
   * Reads and validates the file; throws when it is missing, unreadable or invalid (the message
   * names the file and the reason).
   */
  read(file: string): T;
  /**
   * Takes a good value (and returns `unchanged`, without effect, when it equals the current one;
   * `failed` when it was taken but acting on it failed, already reported). `previousFailed` is true
   * when the attempt before this one was refused, so a file fixed back to the current content can be
   * reported as good again. `notActed` is true when the current value was taken but acting on it
   * failed (and nothing acted on it since): `apply` then acts on a value equal to the current one
   * again instead of returning `unchanged`.
   */
  apply(next: T, ctx: { previousFailed: boolean; notActed: boolean }): ReloadOutcome | void;
  /** Told about a file that was not taken; the caller keeps its previous value. */
  rejected(error: Error): void;
  /**
   * Told the outcome of every reload (after `apply` or `rejected`), and `undefined` when only
   * `failing` changed without a reload (acted). `failing` is true while the file is refused, or its
   * content was taken but acting on it failed, until a later reload or `acted` succeeds.
   */
  observe?(outcome: ReloadOutcome | undefined, failing: boolean): void;
}

/**
 * Keeps a value read from `file` in step with the file: on every (debounced) change it is read
 * again; a good file is applied, a bad one (syntax, schema, unreadable, deleted) is reported and
 * ignored, so the last good value stays until a good file appears. Watching goes on after a bad
 * file. Changes are noticed as `watchFile` notices them, atomic renames and Kubernetes ConfigMap
 * symlink swaps included.
 */
export function followFile<T>(file: string, opts: FollowFileOptions<T>): FileFollower {
  /** The file on disk was refused (the previous value stays). */
  let refused = false;
  /** The value in use was taken, but acting on it failed and nothing acted on it since. */
  let notActed = false;
  /** The file was refused: reported, and the previous value stays. */
  const refuse = (err: unknown): ReloadResult => {
    const error = err instanceof Error ? err : new Error(String(err));
    refused = true;
    opts.rejected(error);
    opts.observe?.('failed', true);
    return { ok: false, error };
  };
  const reload = (): ReloadResult => {
    let next: T;
    try {
      next = opts.read(file);
    } catch (err) {
      return refuse(err);
    }
    const previousFailed = refused;
    refused = false;
    let outcome: ReloadOutcome;
    try {
      outcome = opts.apply(next, { previousFailed, notActed }) ?? 'applied';
    } catch (err) {
      // A value `read` accepted but `apply` refused (before taking it): the previous value stays.
      return refuse(err);
    }
    // Taken but not acted on: failing until a later reload or resync acts on the content in use.
    if (outcome === 'failed') notActed = true;
    else if (outcome === 'applied') notActed = false;
    opts.observe?.(outcome, notActed);
    return { ok: true };
  };
  let watch: FileWatch | undefined = watchFile(file, () => void reload(), {
    debounceMs: opts.debounceMs,
    clock: opts.clock,
  });
  return {
    reload,
    acted() {
      if (!notActed) return;
      notActed = false;
      if (!refused) opts.observe?.(undefined, false);
    },
    close() {
      watch?.close();
      watch = undefined;
    },
  };
}

/**
 * Log fields for a file that was not taken: `reason` once; the stack (`err`) only for an
 * unexpected error. An expected one (MeshauthError, e.g. ConfigError) names the file and the
 * problem in its message and adds its stable `code`.
 */
export function reloadErrorFields(error: Error): Record<string, unknown> {
  return error instanceof MeshauthError
    ? { reason: error.message, code: error.code }
    : { reason: error.message, err: error };
}
