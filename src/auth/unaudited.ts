import type { Logger } from 'pino';
import type { AuditSink } from '../audit/index.js';
import type { AuthKey } from '../datapath/index.js';
import type { AuthCache } from './cache.js';
import { pairKey, type PairNames } from './pair.js';

/** The audit event types that end a pair's entry, or write it. */
export type EntryLifecycleEvent = 'entry-written' | 'entry-removed' | 'entry-expired';

/**
 * What the audit trail last says about each pair's entry, for pairs named `localId|remoteId|node`
 * (see trailKey). Only events since `sinceMs` need be read: an entry alive now was written less
 * than the longest entry lifetime ago.
 */
export type EntryTrail = (sinceMs: number) => ReadonlyMap<string, EntryLifecycleEvent>;

/** The key EntryTrail answers by. */
export function trailKey(n: { localId?: string; remoteId?: string; node?: string }): string {
  return `${n.localId ?? ''}|${n.remoteId ?? ''}|${n.node ?? ''}`;
}

/**
 * Removes restored kernel entries that the audit trail does not account for, and records each
 * removal (audit `entry-removed`, reason `unaudited-entry`). Returns how many were removed.
 *
 * The kernel entry is written first and its `entry-written` event is committed a few milliseconds
 * later by the audit writer thread; a daemon killed in between (SIGKILL, OOM, power loss) leaves a
 * pinned entry with no record of the handshake that earned it. At start-up, a restored entry
 * counts as accounted for when the last lifecycle event of its pair in the trail is
 * `entry-written`; otherwise (no event, or the last one removed or expired the entry) it is
 * deleted: fail closed. The pair's next packet is dropped and signals, and a new handshake writes
 * it again, on the record. A re-authentication whose rewrite of an already-audited entry was lost
 * keeps its entry (the pair was authenticated on the record; only the later expiry is not).
 */
export function removeUnauditedEntries(deps: {
  cache: AuthCache;
  names: (key: AuthKey) => PairNames;
  trail: EntryTrail;
  audit: AuditSink;
  logger: Logger;
  /** Longest entry lifetime (handshake.maxEntryTtl), ms. */
  maxEntryTtlMs: number;
  now?: () => number;
}): number {
  const restored = deps.cache.entries().filter((e) => e.origin === 'restored');
  if (restored.length === 0) return 0;
  const now = (deps.now ?? Date.now)();
  // A minute of slack for a wall clock that stepped back since the entry was written.
  const trail = deps.trail(now - deps.maxEntryTtlMs - 60_000);
  let removed = 0;
  for (const e of restored) {
    const names = deps.names(e.key);
    if (trail.get(trailKey(names)) === 'entry-written') continue;
    deps.cache.delete(e.key);
    removed++;
    deps.audit.record({
      type: 'entry-removed',
      outcome: 'info',
      reason: 'unaudited-entry',
      ...names,
      details: {
        message:
          'pinned entry with no entry-written event in the audit trail (daemon killed before the event was committed): removed, the pair re-authenticates',
        pair: pairKey(e.key),
      },
    });
    deps.logger.warn(
      {
        event: 'entry_unaudited_removed',
        local_id: names.localId,
        remote_id: names.remoteId,
        node: names.node,
      },
      'restored entry not accounted for by the audit trail: removed (the pair re-authenticates)',
    );
  }
  return removed;
}
