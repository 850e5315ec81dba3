import type Database from 'better-sqlite3';
import type { StoredAuditEvent } from './event.js';
import type { AuditEventInput } from './sink.js';

export interface RetentionPolicy {
  /** Delete events older than this. */
  maxAgeMs?: number;
  /** Keep at most this many events. */
  maxRows?: number;
  /** Keep the used database size under this many bytes (deletes ~10% below the limit). */
  maxBytes?: number;
}

export interface RetentionResult {
  deleted: number;
  /** New chain anchor (seq of the last deleted row), or the old one when nothing was deleted. */
  anchorSeq: number;
}

/** What applyRetention needs of an open, writable store, inside its write transaction. */
export interface RetentionContext {
  db: Database.Database;
  /** Bytes used by live pages. */
  usedBytes(): number;
  /** Appends one event to the chain in the same transaction and returns it as stored. */
  append(event: AuditEventInput): StoredAuditEvent;
}

/**
 * Applies a retention policy inside the caller's write transaction: deletes the oldest rows the
 * policy asks for (the union of max-age, max-rows and max-bytes), moves the chain anchor to the
 * last deleted row and appends a `retention` event that records the anchor (verify checks it).
 * `names` keeps every name. `now` is ms since the epoch.
 */
export function applyRetention(
  ctx: RetentionContext,
  policy: RetentionPolicy,
  now: number,
): RetentionResult & { retention?: StoredAuditEvent } {
  const anchor = ctx.db.prepare('SELECT seq FROM chain_anchor WHERE id = 1').get() as { seq: number };
  const why: string[] = [];
  let cutoff = 0;
  const count = () => (ctx.db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  const seqAtOffset = (offset: number): number =>
    (
      ctx.db.prepare('SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?').get(offset) as {
        seq: number;
      }
    ).seq;
  if (policy.maxAgeMs !== undefined) {
    const r = ctx.db.prepare('SELECT max(seq) AS s FROM events WHERE ts < ?').get(now - policy.maxAgeMs) as {
      s: number | null;
    };
    if (r.s !== null && r.s > cutoff) {
      cutoff = r.s;
      why.push('max-age');
    }
  }
  if (policy.maxRows !== undefined) {
    const n = count();
    if (n > policy.maxRows) {
      const s = seqAtOffset(n - policy.maxRows - 1);
      if (s > cutoff) cutoff = s;
      why.push('max-rows');
    }
  }
  if (policy.maxBytes !== undefined) {
    const used = ctx.usedBytes();
    if (used > policy.maxBytes) {
      const n = count();
      const drop = Math.min(n, Math.ceil(n * (1 - (policy.maxBytes * 0.9) / used)));
      if (drop > 0) {
        const s = seqAtOffset(drop - 1);
        if (s > cutoff) cutoff = s;
        why.push('max-bytes');
      }
    }
  }
  if (cutoff === 0) return { deleted: 0, anchorSeq: anchor.seq };
  const last = ctx.db
    .prepare('SELECT seq, hash FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1')
    .get(cutoff) as {
    seq: number;
    hash: Buffer;
  };
  const del = ctx.db.prepare('DELETE FROM events WHERE seq <= ?').run(cutoff);
  // `names` keeps every name: another connection (the writer thread) caches name → id, and a
  // row is a few dozen bytes per identity ever seen
  ctx.db
    .prepare('UPDATE chain_anchor SET seq = ?, hash = ?, at_ms = ? WHERE id = 1')
    .run(last.seq, last.hash, now);
  const retention = ctx.append({
    type: 'retention',
    outcome: 'info',
    reason: why.join(','),
    atMs: now,
    details: { anchorSeq: last.seq, anchorHash: last.hash.toString('hex'), deleted: del.changes },
  });
  return { deleted: del.changes, anchorSeq: last.seq, retention };
}
