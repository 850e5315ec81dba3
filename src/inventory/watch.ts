import { watchFile, type FileWatch } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Clock } from '../time.js';
import type { Inventory } from './inventory.js';
import { readInventoryFile } from './load.js';

export interface InventoryWatcher {
  /**
   * Re-reads the file now. On success the inventory is replaced (listeners run); on failure the
   * current content stays and the error is logged and returned.
   */
  reload(): { ok: true } | { ok: false; error: Error };
  close(): void;
}

/** Keeps `inventory` in step with `file`; a bad new file is logged and ignored. */
export function watchInventoryFile(
  inventory: Inventory,
  file: string,
  opts: { log: Logger; debounceMs?: number; clock?: Clock },
): InventoryWatcher {
  const log = opts.log;
  const reload = (): { ok: true } | { ok: false; error: Error } => {
    try {
      const { data } = readInventoryFile(file);
      if (JSON.stringify(data) === JSON.stringify(inventory.data)) return { ok: true };
      inventory.replace(data);
      log.info(
        { event: 'inventory-reloaded', nodes: data.nodes.length, workloads: data.workloads.length },
        'inventory reloaded',
      );
      return { ok: true };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      log.error(
        { event: 'inventory-reload-failed', reason: error.message, err: error },
        'inventory reload failed; keeping the previous inventory',
      );
      return { ok: false, error };
    }
  };
  let watch: FileWatch | undefined = watchFile(file, () => void reload(), {
    debounceMs: opts.debounceMs,
    clock: opts.clock,
  });
  return {
    reload,
    close() {
      watch?.close();
      watch = undefined;
    },
  };
}
