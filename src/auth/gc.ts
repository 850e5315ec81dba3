import type { Logger } from 'pino';
import type { AuditSink } from '../audit/index.js';
import type { AuthKey } from '../datapath/index.js';
import type { IdentityEvent } from '../identity/index.js';
import { systemClock, type Clock } from '../time.js';
import type { AuthCache } from './cache.js';

/**
 * Removes auth entries that expired or that no longer match an identity/policy the node serves.
 * Sees only the cache (and through it the kernel map).
 */
export class AuthGc {
  constructor(
    private readonly deps: {
      cache: AuthCache;
      audit: AuditSink;
      logger: Logger;
      /** Returns a reason code when the entry must go even though it is live (e.g. identity-removed). */
      obsolete: (key: AuthKey) => string | undefined;
      /** Names for audit events. */
      describe: (key: AuthKey) => { localId?: string; remoteId?: string; node?: string };
      /** Wall clock for expiry; default systemClock. */
      clock?: Pick<Clock, 'now'>;
    },
  ) {}

  /** A workload lost its SVID: its entries go now rather than at the next periodic run. */
  onIdentityEvent(ev: Pick<IdentityEvent, 'type'>): void {
    if (ev.type === 'svid-removed') this.run();
  }

  /**
   * First makes the mirror equal to the kernel map (cache.reconcile(): entries removed or written
   * behind the daemon's back), then removes what expired (in the kernel's clock or the wall clock,
   * whichever says so first) or became obsolete.
   */
  run(): { expired: number; removed: number } {
    this.deps.cache.reconcile();
    const now = (this.deps.clock ?? systemClock).now();
    let expired = 0;
    let removed = 0;
    for (const e of this.deps.cache.entries()) {
      const why = this.deps.cache.isExpired(e, now) ? 'expired' : this.deps.obsolete(e.key);
      if (!why) continue;
      this.deps.cache.delete(e.key);
      const names = this.deps.describe(e.key);
      if (why === 'expired') {
        expired++;
        this.deps.audit.record({
          type: 'entry-expired',
          outcome: 'info',
          reason: 'gc-expired',
          ...names,
          details: { expiresAtMs: e.expiresAtMs },
        });
      } else {
        removed++;
        this.deps.audit.record({ type: 'entry-removed', outcome: 'info', reason: why, ...names });
      }
      this.deps.logger.info({ event: 'entry_gc', reason: why, ...names }, 'auth entry removed');
    }
    return { expired, removed };
  }
}
