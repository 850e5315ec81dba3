import type Database from 'better-sqlite3';
import { AuditQueryError } from './errors.js';
import type { AuditOutcome } from './event.js';
import type { EventRow } from './rows.js';
import type { AuditEventType } from './sink.js';

/** Filters of a query; all given filters must match. */
export interface AuditQuery {
  /** SPIFFE ID matched against local or remote id: exact, or a glob (`*`, `?`, `[...]`) pattern. */
  identity?: string;
  node?: string;
  outcome?: AuditOutcome;
  reason?: string;
  types?: readonly AuditEventType[];
  /** Inclusive lower bound on the event time (ms since epoch). */
  sinceMs?: number;
  /** Exclusive upper bound on the event time. */
  untilMs?: number;
  /** Only rows with seq greater than this (paging / follow cursor). */
  afterSeq?: number;
  /** Only rows with seq less than this (paging backwards). */
  beforeSeq?: number;
  /** Default 100, at most 10,001 (an API page of 10,000 and one more row that tells whether another page follows). */
  limit?: number;
  /** Highest seq first (default: ascending seq). */
  newestFirst?: boolean;
}

/**
 * Most rows one query returns: the API's largest page (MAX_PAGE_SIZE, 10,000) plus the one row
 * QueryEvents asks for beyond it to know whether another page follows. With 10,000 here a
 * QueryEvents of page_size 10,000, which the API accepts, failed inside with this limit.
 */
const MAX_LIMIT = 10_001;
const GLOB_CHARS = /[*?[]/;

/** True when the identity filter is a glob pattern rather than an exact SPIFFE ID. */
export function isIdentityPattern(identity: string): boolean {
  return GLOB_CHARS.test(identity);
}

/** What runQuery needs of an open store. */
export interface QueryContext {
  db: Database.Database;
  /** Rows scanned without an index before the indexes are used (AuditStoreOptions.scanWindow). */
  scanWindow: number;
  /** The chain head's lateness_ms: how far an event's time may lag behind an earlier one's. */
  latenessMs(): number;
  /** `SELECT seq FROM events WHERE ts < ? ORDER BY ts DESC LIMIT 1` */
  lastBefore: Database.Statement;
  /** `SELECT seq FROM events WHERE ts >= ? ORDER BY ts ASC LIMIT 1` */
  firstFrom: Database.Statement;
}

/**
 * Two steps, both in seq order: (1) the first scanWindow rows of the requested seq range, read
 * without an index, which fills the page at once when the filter matches often; (2) only when
 * the page is not full, the rest of the range through the indexes (good for rare matches).
 */
export function runQuery(ctx: QueryContext, plan: QueryPlan): EventRow[] {
  const { where, params, desc, limit } = plan;
  const order = desc ? 'DESC' : 'ASC';
  const direct = (extra: string[], extraParams: unknown[], lim: number, notIndexed = false): EventRow[] => {
    const all = [...where, ...extra];
    const sql =
      `SELECT * FROM events${notIndexed ? ' NOT INDEXED' : ''}` +
      (all.length ? ` WHERE ${all.join(' AND ')}` : '') +
      ` ORDER BY seq ${order} LIMIT ?`;
    return ctx.db.prepare(sql).all(...params, ...extraParams, lim) as EventRow[];
  };
  // no filter beyond the seq range: rowid order is already the best plan
  if (!plan.filtered) return direct(plan.seqBounds, plan.seqParams, limit);
  // two subqueries: SQLite answers a lone min() or max() of the rowid from the b-tree ends
  const ends = ctx.db
    .prepare('SELECT (SELECT min(seq) FROM events) AS lo, (SELECT max(seq) FROM events) AS hi')
    .get() as {
    lo: number | null;
    hi: number | null;
  };
  if (ends.lo === null || ends.hi === null) return [];
  let lo = Math.max(ends.lo, plan.afterSeq === undefined ? -Infinity : plan.afterSeq + 1);
  let hi = Math.min(ends.hi, plan.beforeSeq === undefined ? Infinity : plan.beforeSeq - 1);
  // Time bounds → seq bounds. Event times are not strictly ordered by seq, but no event's time
  // lags behind the highest earlier one by more than lateness_ms (kept by every append). So an
  // event older than since − lateness comes before every event at or after since, and an event
  // at or after until + lateness comes after every event before until: two seeks on events_ts.
  if (plan.sinceMs !== undefined || plan.untilMs !== undefined) {
    const lateness = ctx.latenessMs();
    if (plan.sinceMs !== undefined) {
      const r = ctx.lastBefore.get(plan.sinceMs - lateness) as { seq: number } | undefined;
      if (r) lo = Math.max(lo, r.seq + 1);
    }
    if (plan.untilMs !== undefined) {
      const r = ctx.firstFrom.get(plan.untilMs + lateness) as { seq: number } | undefined;
      if (r) hi = Math.min(hi, r.seq - 1);
    }
  }
  if (lo > hi) return [];
  const [wLo, wHi] = desc
    ? [Math.max(lo, hi - ctx.scanWindow + 1), hi]
    : [lo, Math.min(hi, lo + ctx.scanWindow - 1)];
  const first = direct(['seq >= ?', 'seq <= ?'], [wLo, wHi], limit, true);
  if (first.length >= limit || (wLo === lo && wHi === hi)) return first;
  // `+seq`: the range must not lure the planner into a rowid scan; the filter's index leads here
  const rest = desc
    ? direct(['+seq >= ?', '+seq < ?'], [lo, wLo], limit - first.length)
    : direct(['+seq > ?', '+seq <= ?'], [wHi, hi], limit - first.length);
  return first.concat(rest);
}

export interface QueryPlan {
  /** True when a named identity or node never occurs in the trail: nothing can match. */
  empty: boolean;
  sinceMs: number | undefined;
  untilMs: number | undefined;
  /** Conditions other than the seq range. */
  where: string[];
  params: unknown[];
  /** True when `where` is not empty. */
  filtered: boolean;
  seqBounds: string[];
  seqParams: unknown[];
  afterSeq: number | undefined;
  beforeSeq: number | undefined;
  desc: boolean;
  limit: number;
}

export function buildQuery(q: AuditQuery, findName: (value: string) => number | undefined): QueryPlan {
  const where: string[] = [];
  const params: unknown[] = [];
  let empty = false;
  const limit = q.limit ?? 100;
  if (!Number.isInteger(limit) || limit <= 0 || limit > MAX_LIMIT) {
    throw new AuditQueryError(`audit: query: limit must be an integer in 1..${MAX_LIMIT}, got ${limit}`);
  }
  if (q.identity !== undefined && q.identity !== '') {
    if (isIdentityPattern(q.identity)) {
      where.push(
        '(local_ref IN (SELECT id FROM names WHERE value GLOB ?) OR remote_ref IN (SELECT id FROM names WHERE value GLOB ?))',
      );
      params.push(q.identity, q.identity);
    } else {
      const id = findName(q.identity);
      if (id === undefined) empty = true;
      where.push('(local_ref = ? OR remote_ref = ?)');
      params.push(id ?? 0, id ?? 0);
    }
  }
  if (q.node !== undefined && q.node !== '') {
    const id = findName(q.node);
    if (id === undefined) empty = true;
    where.push('node_ref = ?');
    params.push(id ?? 0);
  }
  for (const [col, v] of [
    ['outcome', q.outcome],
    ['reason', q.reason],
  ] as const) {
    if (v !== undefined && v !== '') {
      where.push(`${col} = ?`);
      params.push(v);
    }
  }
  if (q.types && q.types.length > 0) {
    where.push(`type IN (${q.types.map(() => '?').join(',')})`);
    params.push(...q.types);
  }
  if (q.sinceMs !== undefined && q.untilMs !== undefined && q.untilMs <= q.sinceMs) {
    throw new AuditQueryError(`audit: query: until (${q.untilMs}) must be after since (${q.sinceMs})`);
  }
  if (q.sinceMs !== undefined) {
    where.push('ts >= ?');
    params.push(q.sinceMs);
  }
  if (q.untilMs !== undefined) {
    where.push('ts < ?');
    params.push(q.untilMs);
  }
  const seqBounds: string[] = [];
  const seqParams: unknown[] = [];
  for (const [name, v] of [
    ['afterSeq', q.afterSeq],
    ['beforeSeq', q.beforeSeq],
  ] as const) {
    if (v !== undefined && !Number.isSafeInteger(v)) {
      throw new AuditQueryError(`audit: query: ${name} must be an integer, got ${v}`);
    }
  }
  if (q.afterSeq !== undefined) {
    seqBounds.push('seq > ?');
    seqParams.push(q.afterSeq);
  }
  if (q.beforeSeq !== undefined) {
    seqBounds.push('seq < ?');
    seqParams.push(q.beforeSeq);
  }
  return {
    empty,
    sinceMs: q.sinceMs,
    untilMs: q.untilMs,
    where,
    params,
    filtered: where.length > 0,
    seqBounds,
    seqParams,
    afterSeq: q.afterSeq,
    beforeSeq: q.beforeSeq,
    desc: q.newestFirst ?? false,
    limit,
  };
}
