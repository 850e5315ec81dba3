import { followFile, reloadErrorFields, type ReloadOutcome, type ReloadResult } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Clock } from '../time.js';
import { Inventory } from './inventory.js';
import { readInventoryFile } from './load.js';
import { assertNodeListed } from './node-check.js';

export interface InventoryWatcher {
  /**
   * Re-reads the file now. On success the inventory is replaced (listeners run); on failure the
   * current content stays and the error is logged and returned.
   */
  reload(): ReloadResult;
  /** The inventory in use was acted on since (a later resync succeeded): see FileFollower.acted. */
  acted(): void;
  close(): void;
}

export interface WatchInventoryFileOptions {
  log: Logger;
  /**
   * This node's name: a new file that leaves it out is refused, as start-up refuses it
   * (assertNodeListed); the node's maps cannot be compiled without it.
   */
  node?: string;
  /** The daemon's config file, named in the "node is not in the inventory" reason. */
  configFile?: string;
  /**
   * Told the outcome of every reload (metrics), and `undefined` when only `failing` changed;
   * `failing` is true while the file is refused or its content was taken but not acted on.
   */
  observe?: (outcome: ReloadOutcome | undefined, failing: boolean) => void;
  debounceMs?: number;
  clock?: Clock;
}

/**
 * Keeps `inventory` in step with `file`. A new file is checked as at start (schema, cross
 * references, this node listed) before anything is swapped; a bad one is logged
 * (`inventory_reload_failed`) and the previous inventory stays. A file fixed back to the current
 * content logs `inventory_reloaded` with `unchanged: true`. When the new inventory was taken but a
 * listener (the daemon's map resync) threw, `inventory_reload_failed` with `applied: true` says so
 * and the outcome is `failed`; the next reload of the same content tells the listeners again
 * (Inventory.replace with equal content).
 */
export function watchInventoryFile(
  inventory: Inventory,
  file: string,
  opts: WatchInventoryFileOptions,
): InventoryWatcher {
  const log = opts.log;
  return followFile(file, {
    read(f) {
      const { data, label } = readInventoryFile(f);
      if (opts.node !== undefined) assertNodeListed(new Inventory(data, label), opts.node, opts.configFile);
      return data;
    },
    apply(data, { previousFailed, notActed }): ReloadOutcome {
      const counts = { nodes: data.nodes.length, workloads: data.workloads.length };
      const same = JSON.stringify(data) === JSON.stringify(inventory.data);
      if (same && !notActed) {
        if (previousFailed) {
          log.info(
            { event: 'inventory_reloaded', file, unchanged: true, ...counts },
            'inventory file is valid again (same content as the inventory in use)',
          );
        }
        return 'unchanged';
      }
      const before = inventory.data;
      try {
        inventory.replace(data);
      } catch (err) {
        // Not swapped: refused like a bad file (followFile logs it; the previous inventory stays).
        if (inventory.data === before) throw err;
        const error = err instanceof Error ? err : new Error(String(err));
        log.error(
          { event: 'inventory_reload_failed', file, applied: true, ...reloadErrorFields(error) },
          'inventory file taken, but acting on it failed: the node maps may not match it',
        );
        return 'failed';
      }
      if (same) {
        log.info(
          { event: 'inventory_reloaded', file, unchanged: true, retried: true, ...counts },
          'inventory in use acted on again (the last attempt failed): the node maps match it now',
        );
      } else {
        log.info({ event: 'inventory_reloaded', file, ...counts }, 'inventory reloaded');
      }
      return 'applied';
    },
    rejected(error) {
      log.error(
        { event: 'inventory_reload_failed', file, ...reloadErrorFields(error) },
        'inventory reload failed; keeping the previous inventory',
      );
    },
    ...(opts.observe ? { observe: opts.observe } : {}),
    debounceMs: opts.debounceMs,
    clock: opts.clock,
  });
}
