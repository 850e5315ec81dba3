import { Counter, Gauge, type Registry } from 'prom-client';
import type { ReloadOutcome } from '../config/index.js';

/** The files meshauthd follows. */
export type ReloadedFile = 'policy' | 'inventory';

/**
 * Inventory and policy file reloads:
 * - `meshauth_file_reload_total{file,outcome}`: reloads by outcome (`applied`: new content taken;
 *   `unchanged`: same content as in use; `failed`: refused, or taken but not acted on);
 * - `meshauth_file_reload_failing{file}`: 1 while the file on disk is refused (the previous content
 *   stays in use), or its content was taken but acting on it failed (the maps may not match it)
 *   until a later reload or map resync succeeds; else 0. Alert on it.
 */
export class FileReloadMetrics {
  readonly reloads: Counter<'file' | 'outcome'>;
  readonly failing: Gauge<'file'>;

  constructor(registry: Registry) {
    this.reloads = new Counter({
      name: 'meshauth_file_reload_total',
      help: 'Inventory and policy file reloads by file and outcome (applied, unchanged, failed)',
      labelNames: ['file', 'outcome'],
      registers: [registry],
    });
    this.failing = new Gauge({
      name: 'meshauth_file_reload_failing',
      help: '1 while the file on disk is refused, or its content was taken but not acted on, else 0',
      labelNames: ['file'],
      registers: [registry],
    });
  }

  /** Starts the series of `file` at 0 (a followed file shows up before its first reload). */
  /** The returned observer counts `outcome` (none when undefined: only `failing` changed). */
  follow(file: ReloadedFile): (outcome: ReloadOutcome | undefined, failing: boolean) => void {
    for (const outcome of ['applied', 'unchanged', 'failed'] as const) this.reloads.inc({ file, outcome }, 0);
    this.failing.set({ file }, 0);
    return (outcome, failing) => {
      if (outcome !== undefined) this.reloads.inc({ file, outcome });
      this.failing.set({ file }, failing ? 1 : 0);
    };
  }
}
