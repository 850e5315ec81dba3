import type { Logger } from '../log.js';
import type { RetentionPolicy } from './retention.js';
import type { AuditStore } from './store.js';

export interface RetentionRunnerOptions extends RetentionPolicy {
  /** How often the policy is applied. Default 60 s. */
  intervalMs?: number;
  logger?: Logger;
}

/** Applies a retention policy to a store periodically. */
export class RetentionRunner {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: AuditStore,
    private readonly opts: RetentionRunnerOptions,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.runOnce(), this.opts.intervalMs ?? 60_000);
    this.timer.unref();
  }

  /** Apply the policy now; returns rows deleted (0 on failure, which is logged). */
  runOnce(): number {
    if (this.store.isClosed) return 0;
    try {
      const r = this.store.prune(this.opts);
      if (r.deleted > 0) {
        this.opts.logger?.info(
          { event: 'audit_retention', deleted: r.deleted, anchor_seq: r.anchorSeq },
          'audit rows pruned',
        );
      }
      return r.deleted;
    } catch (err) {
      this.opts.logger?.error({ event: 'audit_retention_failed', err }, 'audit retention failed');
      return 0;
    }
  }

  /** Idempotent. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
