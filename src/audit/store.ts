import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ClosedError } from '../errors.js';
import { canonicalJson, rowHash, type ChainFields } from './canonical.js';
import { AuditQueryError, AuditSchemaError, AuditStoreError } from './errors.js';
import { isAuditOutcome, type AuditOutcome, type StoredAuditEvent } from './event.js';
import { NameTable } from './names.js';
import { migrate, schemaVersion, SCHEMA_VERSION } from './schema.js';
import type { AuditEventInput, AuditEventType } from './sink.js';

export interface AuditStoreOptions {
  /** Database file; its directory is created (0700) when missing. */
  path: string;
  /** Open without writing (offline verification, inspection). */
  readonly?: boolean;
  /** PRAGMA synchronous: NORMAL (default; WAL keeps committed transactions across process crashes) or FULL. */
  synchronous?: 'NORMAL' | 'FULL';
  /**
   * Filtered queries first scan this many rows in seq order without an index (cheap when the filter
   * matches often), and use the indexes for the rest only when that did not fill the page. Default 20,000.
   */
  scanWindow?: number;
}

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
  /** Default 100, at most 10,000. */
  limit?: number;
  /** Highest seq first (default: ascending seq). */
  newestFirst?: boolean;
}

export type ChainProblemKind =
  'edited' | 'deleted' | 'reordered' | 'broken-link' | 'truncated' | 'anchor' | 'checkpoint';

/** A (seq, hash) pair taken from an earlier report and kept off the node. */
export interface ChainCheckpoint {
  seq: number;
  /** Hex SHA-256 of that row. */
  hash: string;
}

export interface ChainReport {
  ok: boolean;
  /** Rows checked. */
  checked: number;
  /** Seq the chain starts after (last row removed by retention; 0 when nothing was removed). */
  anchorSeq: number;
  firstSeq: number | null;
  lastSeq: number | null;
  /** Hash (hex) of the last row: record it with lastSeq elsewhere and pass it back as a checkpoint. */
  lastHash: string | null;
  problem?: { seq: number; kind: ChainProblemKind; message: string };
}

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

export interface AuditStoreStats {
  rows: number;
  firstSeq: number | null;
  lastSeq: number;
  anchorSeq: number;
  /** Bytes used by live pages. */
  bytes: number;
}

/** A row of the events table: SPIFFE IDs and node names as references into `names`. */
interface EventRow {
  seq: number;
  ts: number;
  type: string;
  outcome: string | null;
  reason: string | null;
  local_ref: number | null;
  remote_ref: number | null;
  node_ref: number | null;
  direction: string | null;
  details: string | null;
  prev_hash: Buffer;
  hash: Buffer;
}

const MAX_LIMIT = 10_000;
const GLOB_CHARS = /[*?[]/;

/**
 * The audit trail on disk: one SQLite file in WAL mode, one row per event, each row hash-chained to
 * the previous one. Appends happen in one transaction per batch; use AuditWriter for the
 * non-blocking path. A single process should append (others may read).
 */
export class AuditStore {
  readonly path: string;
  private readonly db: Database.Database;
  private closed = false;
  private readonly listeners = new Set<(lastSeq: number) => void>();
  private readonly insert: Database.Statement | undefined;
  private readonly readHead: Database.Statement;
  private readonly writeHead: Database.Statement | undefined;
  private readonly appendTx:
    ((events: readonly AuditEventInput[], collect: boolean) => StoredAuditEvent[]) | undefined;
  private readonly names: NameTable;
  /** Time bound → seq bound seeks on events_ts (see runQuery). */
  private readonly lastBefore: Database.Statement;
  private readonly firstFrom: Database.Statement;
  /** Seq of the last row the latest append wrote. */
  private appendedSeq = 0;

  private readonly scanWindow: number;

  private constructor(db: Database.Database, path: string, readonly: boolean, scanWindow: number) {
    this.db = db;
    this.path = path;
    this.scanWindow = scanWindow;
    this.readHead = db.prepare('SELECT seq, hash, max_ts, lateness_ms FROM chain_head WHERE id = 1');
    this.names = new NameTable(db, !readonly);
    this.lastBefore = db.prepare('SELECT seq FROM events WHERE ts < ? ORDER BY ts DESC LIMIT 1');
    this.firstFrom = db.prepare('SELECT seq FROM events WHERE ts >= ? ORDER BY ts ASC LIMIT 1');
    if (!readonly) {
      this.insert = db.prepare(
        `INSERT INTO events (seq, ts, type, outcome, reason, local_ref, remote_ref, node_ref, direction, details, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      this.writeHead = db.prepare(
        'UPDATE chain_head SET seq = ?, hash = ?, max_ts = ?, lateness_ms = ? WHERE id = 1',
      );
      this.appendTx = db.transaction((events: readonly AuditEventInput[], collect: boolean) =>
        this.appendRows(events, collect),
      ).immediate;
    }
  }

  /** Open (creating and migrating when needed) the database at opts.path. */
  static open(opts: AuditStoreOptions): AuditStore {
    const readonly = opts.readonly ?? false;
    let db: Database.Database;
    try {
      if (!readonly) mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      db = new Database(opts.path, { readonly, fileMustExist: readonly });
    } catch (err) {
      throw new AuditStoreError(`audit: open ${opts.path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      db.pragma('busy_timeout = 5000');
      if (!readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
        // Index pages of a busy trail stay hot: a 64 MiB page cache keeps them.
        db.pragma('cache_size = -65536');
        // Checkpoint every 32,768 pages (128 MiB of WAL): a hot index page is copied back once per
        // checkpoint, so fewer, larger checkpoints cost less per event (measured in bench/audit.ts);
        // the WAL file is cut back to that size after a checkpoint.
        db.pragma('wal_autocheckpoint = 32768');
        db.pragma('journal_size_limit = 134217728');
        migrate(db, opts.path);
      } else {
        const v = schemaVersion(db);
        if (v !== SCHEMA_VERSION) {
          throw new AuditSchemaError(
            v > SCHEMA_VERSION
              ? `audit: open ${opts.path}: schema version ${v} is newer than this build supports (${SCHEMA_VERSION})`
              : `audit: open ${opts.path}: schema version ${v} is older than this build's (${SCHEMA_VERSION}); open it read-write once (start meshauthd) to migrate it`,
          );
        }
      }
      return new AuditStore(db, opts.path, readonly, opts.scanWindow ?? 20_000);
    } catch (err) {
      db.close();
      if (err instanceof AuditStoreError || (err as { code?: string }).code === 'MESHAUTH_ERR_AUDIT_SCHEMA')
        throw err;
      throw new AuditStoreError(`audit: open ${opts.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Append events in one transaction; returns them as stored (with seq and hashes). */
  append(events: readonly AuditEventInput[]): StoredAuditEvent[] {
    return this.appendBatch(events, true);
  }

  /** Append events in one transaction without building their stored form; returns the last seq. */
  appendQuiet(events: readonly AuditEventInput[]): number {
    this.appendBatch(events, false);
    return this.appendedSeq;
  }

  private appendBatch(events: readonly AuditEventInput[], collect: boolean): StoredAuditEvent[] {
    this.assertOpen('append');
    if (!this.appendTx) throw new AuditStoreError(`audit: append to ${this.path}: store is read-only`);
    if (events.length === 0) return [];
    let stored: StoredAuditEvent[];
    try {
      stored = this.appendTx(events, collect);
    } catch (err) {
      this.names.rollback();
      throw err;
    }
    this.names.commit();
    this.notifyAppended(this.appendedSeq);
    return stored;
  }

  /**
   * Called after every committed append made through this store, and after every batch another
   * connection of this process (AuditWriter's thread) reports committed: follow streams wake on
   * it and read what is new. The argument is the highest committed seq. Returns an unsubscribe function.
   */
  onAppend(listener: (lastSeq: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Tell the listeners that rows up to lastSeq are committed (default: the chain head now). */
  notifyAppended(lastSeq?: number): void {
    if (this.listeners.size === 0 || this.closed) return;
    const seq = lastSeq ?? this.lastSeq();
    for (const l of this.listeners) {
      try {
        l(seq);
      } catch {
        // a listener's failure is its own business
      }
    }
  }

  private appendRows(events: readonly AuditEventInput[], collect = true): StoredAuditEvent[] {
    const head = this.readHead.get() as HeadRow;
    let seq = head.seq;
    let prev = head.hash;
    let maxTs = head.max_ts;
    let lateness = head.lateness_ms;
    const ref = (v: string | null): number | null => (v === null ? null : this.names.intern(v));
    const out: StoredAuditEvent[] = [];
    for (const e of events) {
      seq++;
      const f: ChainFields = {
        seq,
        prevHash: prev,
        ts: Math.trunc(e.atMs ?? Date.now()),
        type: e.type,
        outcome: e.outcome ?? null,
        reason: e.reason ?? null,
        localId: e.localId ?? null,
        remoteId: e.remoteId ?? null,
        node: e.node ?? null,
        direction: e.direction ?? null,
        details: e.details && Object.keys(e.details).length > 0 ? canonicalJson(e.details) : null,
      };
      const hash = rowHash(f);
      if (f.ts > maxTs) maxTs = f.ts;
      else if (maxTs - f.ts > lateness) lateness = maxTs - f.ts;
      this.insert!.run(
        seq,
        f.ts,
        f.type,
        f.outcome,
        f.reason,
        ref(f.localId),
        ref(f.remoteId),
        ref(f.node),
        f.direction,
        f.details,
        f.prevHash,
        hash,
      );
      if (!collect) {
        prev = hash;
        continue;
      }
      const stored: StoredAuditEvent = { seq, atMs: f.ts, type: e.type, prevHash: '', hash: '' };
      if (f.outcome !== null) stored.outcome = e.outcome!;
      if (f.reason !== null) stored.reason = f.reason;
      if (f.localId !== null) stored.localId = f.localId;
      if (f.remoteId !== null) stored.remoteId = f.remoteId;
      if (f.node !== null) stored.node = f.node;
      if (f.direction !== null) stored.direction = e.direction!;
      // exactly what a later query returns: the details as stored (canonical JSON parsed back)
      if (f.details !== null) stored.details = JSON.parse(f.details) as Record<string, unknown>;
      stored.prevHash = prev.toString('hex');
      stored.hash = hash.toString('hex');
      out.push(stored);
      prev = hash;
    }
    this.writeHead!.run(seq, prev, maxTs, lateness);
    this.appendedSeq = seq;
    return out;
  }

  /** Events matching q, ordered by seq. */
  query(q: AuditQuery = {}): StoredAuditEvent[] {
    this.assertOpen('query');
    const plan = buildQuery(q, (v) => this.names.find(v));
    if (plan.empty) return [];
    try {
      return this.db
        .transaction(() => this.runQuery(plan))()
        .map((r) => toEvent(r, (id) => this.names.value(id)));
    } catch (err) {
      throw new AuditStoreError(`audit: query ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Two steps, both in seq order: (1) the first scanWindow rows of the requested seq range, read
   * without an index, which fills the page at once when the filter matches often; (2) only when
   * the page is not full, the rest of the range through the indexes (good for rare matches).
   */
  private runQuery(plan: QueryPlan): EventRow[] {
    const { where, params, desc, limit } = plan;
    const order = desc ? 'DESC' : 'ASC';
    const direct = (extra: string[], extraParams: unknown[], lim: number, notIndexed = false): EventRow[] => {
      const all = [...where, ...extra];
      const sql =
        `SELECT * FROM events${notIndexed ? ' NOT INDEXED' : ''}` +
        (all.length ? ` WHERE ${all.join(' AND ')}` : '') +
        ` ORDER BY seq ${order} LIMIT ?`;
      return this.db.prepare(sql).all(...params, ...extraParams, lim) as EventRow[];
    };
    // no filter beyond the seq range: rowid order is already the best plan
    if (!plan.filtered) return direct(plan.seqBounds, plan.seqParams, limit);
    // two subqueries: SQLite answers a lone min() or max() of the rowid from the b-tree ends
    const ends = this.db
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
      const lateness = (this.readHead.get() as HeadRow).lateness_ms;
      if (plan.sinceMs !== undefined) {
        const r = this.lastBefore.get(plan.sinceMs - lateness) as { seq: number } | undefined;
        if (r) lo = Math.max(lo, r.seq + 1);
      }
      if (plan.untilMs !== undefined) {
        const r = this.firstFrom.get(plan.untilMs + lateness) as { seq: number } | undefined;
        if (r) hi = Math.min(hi, r.seq - 1);
      }
    }
    if (lo > hi) return [];
    const [wLo, wHi] = desc
      ? [Math.max(lo, hi - this.scanWindow + 1), hi]
      : [lo, Math.min(hi, lo + this.scanWindow - 1)];
    const first = direct(['seq >= ?', 'seq <= ?'], [wLo, wHi], limit, true);
    if (first.length >= limit || (wLo === lo && wHi === hi)) return first;
    // `+seq`: the range must not lure the planner into a rowid scan; the filter's index leads here
    const rest = desc
      ? direct(['+seq >= ?', '+seq < ?'], [lo, wLo], limit - first.length)
      : direct(['+seq > ?', '+seq <= ?'], [wHi, hi], limit - first.length);
    return first.concat(rest);
  }

  /** Highest seq ever appended (0 when empty). */
  lastSeq(): number {
    this.assertOpen('lastSeq');
    return (this.readHead.get() as { seq: number }).seq;
  }

  stats(): AuditStoreStats {
    this.assertOpen('stats');
    const r = this.db.prepare('SELECT count(*) AS n, min(seq) AS first FROM events').get() as {
      n: number;
      first: number | null;
    };
    const anchor = this.db.prepare('SELECT seq FROM chain_anchor WHERE id = 1').get() as { seq: number };
    return {
      rows: r.n,
      firstSeq: r.first,
      lastSeq: this.lastSeq(),
      anchorSeq: anchor.seq,
      bytes: this.usedBytes(),
    };
  }

  private usedBytes(): number {
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    const size = this.db.pragma('page_size', { simple: true }) as number;
    return (pages - free) * size;
  }

  /**
   * Walk the whole chain. Reports the first row that is inconsistent and why:
   * edited (its hash no longer matches its fields), deleted (a seq is missing), reordered (the row
   * hashes correctly only under another seq), broken-link (prev_hash is not the previous row's hash:
   * a neighbour was rewritten with a recomputed hash), truncated (rows after the last one are
   * missing), anchor (the first row does not continue from the retention anchor), checkpoint (the
   * row at a checkpoint's seq does not have the hash recorded then: the trail was rewritten from
   * there on and its hashes recomputed, which the chain alone cannot show).
   */
  verifyChain(checkpoints: readonly ChainCheckpoint[] = []): ChainReport {
    this.assertOpen('verifyChain');
    for (const c of checkpoints) {
      if (!Number.isSafeInteger(c.seq) || c.seq <= 0 || !/^[0-9a-f]{64}$/.test(c.hash)) {
        throw new AuditQueryError(
          `audit verify: checkpoint must be <seq>:<64 hex digits of the hash>, got ${c.seq}:${c.hash}`,
        );
      }
    }
    // one read transaction: head, anchor and rows from the same snapshot while a writer appends
    return this.db.transaction(() => this.verifySnapshot(checkpoints))();
  }

  private verifySnapshot(checkpoints: readonly ChainCheckpoint[]): ChainReport {
    const want = new Map(checkpoints.map((c) => [c.seq, c.hash]));
    const anchor = this.db.prepare('SELECT seq, hash FROM chain_anchor WHERE id = 1').get() as {
      seq: number;
      hash: Buffer;
    };
    const head = this.readHead.get() as HeadRow;
    const names = this.names.snapshot();
    const report: ChainReport = {
      ok: true,
      checked: 0,
      anchorSeq: anchor.seq,
      firstSeq: null,
      lastSeq: null,
      lastHash: null,
    };
    const fail = (seq: number, kind: ChainProblemKind, message: string): ChainReport => ({
      ...report,
      ok: false,
      problem: { seq, kind, message },
    });

    let expectSeq = anchor.seq + 1;
    let prevHash = anchor.hash;
    let lastRetention: { seq: number; anchorSeq: unknown } | undefined;
    const rows = this.db.prepare('SELECT * FROM events ORDER BY seq').iterate() as IterableIterator<EventRow>;
    for (const r of rows) {
      if (report.firstSeq === null) report.firstSeq = r.seq;
      if (r.seq !== expectSeq) {
        const missing =
          r.seq - 1 === expectSeq ? `seq ${expectSeq} is` : `seqs ${expectSeq}..${r.seq - 1} are`;
        return fail(
          expectSeq,
          'deleted',
          `audit verify: ${missing} missing (deleted rows)${report.checked === 0 ? ' before the first stored row' : ''}`,
        );
      }
      const fields = toFields(r, (id) => names.get(id));
      const computed = rowHash(fields);
      if (!computed.equals(r.hash)) {
        const other = findSeqThatHashes(fields, r.hash);
        if (other !== undefined) {
          return fail(
            r.seq,
            'reordered',
            `audit verify: row at seq ${r.seq} was written as seq ${other} (rows reordered)`,
          );
        }
        return fail(
          r.seq,
          'edited',
          `audit verify: seq ${r.seq}: stored hash does not match its fields (row edited)`,
        );
      }
      if (!r.prev_hash.equals(prevHash)) {
        if (report.checked === 0) {
          return fail(
            r.seq,
            'anchor',
            `audit verify: seq ${r.seq}: does not continue from the chain anchor (seq ${anchor.seq})`,
          );
        }
        return fail(
          r.seq,
          'broken-link',
          `audit verify: seq ${r.seq}: prev_hash is not the hash of seq ${r.seq - 1} (seq ${r.seq - 1} or ${r.seq} was rewritten)`,
        );
      }
      if (r.type === 'retention') {
        const d = r.details ? (JSON.parse(r.details) as { anchorSeq?: unknown }) : {};
        lastRetention = { seq: r.seq, anchorSeq: d.anchorSeq };
      }
      prevHash = r.hash;
      expectSeq = r.seq + 1;
      report.checked++;
      report.lastSeq = r.seq;
      report.lastHash = r.hash.toString('hex');
      const expected = want.get(r.seq);
      if (expected !== undefined && expected !== report.lastHash) {
        return fail(
          r.seq,
          'checkpoint',
          `audit verify: seq ${r.seq}: hash ${report.lastHash} differs from the checkpoint ${expected} (the trail was rewritten from here on)`,
        );
      }
    }
    if (head.seq >= expectSeq) {
      return fail(
        expectSeq,
        'truncated',
        `audit verify: seqs ${expectSeq}..${head.seq} are missing (rows deleted from the end)`,
      );
    }
    if (!head.hash.equals(prevHash) && head.seq > anchor.seq) {
      return fail(
        head.seq,
        'edited',
        `audit verify: seq ${head.seq}: does not match the recorded chain head`,
      );
    }
    if (anchor.seq > 0 && (lastRetention === undefined || lastRetention.anchorSeq !== anchor.seq)) {
      return fail(
        anchor.seq + 1,
        'anchor',
        `audit verify: chain anchor (seq ${anchor.seq}) is not the one recorded by the last retention event`,
      );
    }
    for (const [seq, hash] of want) {
      if (seq === anchor.seq && anchor.seq > 0) {
        if (anchor.hash.toString('hex') !== hash) {
          return fail(
            seq,
            'checkpoint',
            `audit verify: seq ${seq}: the retention anchor's hash differs from the checkpoint`,
          );
        }
      } else if (seq < anchor.seq) {
        // removed by retention: the chain from the anchor on cannot speak for it; say so, fail closed
        return fail(
          seq,
          'checkpoint',
          `audit verify: checkpoint seq ${seq} was removed by retention (the trail starts after seq ${anchor.seq}); use a later checkpoint`,
        );
      } else if (seq > (report.lastSeq ?? anchor.seq)) {
        return fail(
          seq,
          'checkpoint',
          `audit verify: checkpoint seq ${seq} is past the last stored row (${report.lastSeq ?? 'none'}): rows were removed from the end`,
        );
      }
    }
    return report;
  }

  /** Apply a retention policy: delete the oldest rows and move the chain anchor past them. */
  prune(policy: RetentionPolicy, now = Date.now()): RetentionResult {
    this.assertOpen('prune');
    if (!this.appendTx) throw new AuditStoreError(`audit: prune ${this.path}: store is read-only`);
    let retention: StoredAuditEvent | undefined;
    const run = this.db.transaction((): RetentionResult => {
      const anchor = this.db.prepare('SELECT seq FROM chain_anchor WHERE id = 1').get() as { seq: number };
      const why: string[] = [];
      let cutoff = 0;
      const count = () => (this.db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
      const seqAtOffset = (offset: number): number =>
        (
          this.db.prepare('SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?').get(offset) as {
            seq: number;
          }
        ).seq;
      if (policy.maxAgeMs !== undefined) {
        const r = this.db
          .prepare('SELECT max(seq) AS s FROM events WHERE ts < ?')
          .get(now - policy.maxAgeMs) as {
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
        const used = this.usedBytes();
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
      const last = this.db
        .prepare('SELECT seq, hash FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1')
        .get(cutoff) as {
        seq: number;
        hash: Buffer;
      };
      const del = this.db.prepare('DELETE FROM events WHERE seq <= ?').run(cutoff);
      // `names` keeps every name: another connection (the writer thread) caches name → id, and a
      // row is a few dozen bytes per identity ever seen
      this.db
        .prepare('UPDATE chain_anchor SET seq = ?, hash = ?, at_ms = ? WHERE id = 1')
        .run(last.seq, last.hash, now);
      [retention] = this.appendRows([
        {
          type: 'retention',
          outcome: 'info',
          reason: why.join(','),
          atMs: now,
          details: { anchorSeq: last.seq, anchorHash: last.hash.toString('hex'), deleted: del.changes },
        },
      ]);
      return { deleted: del.changes, anchorSeq: last.seq };
    }).immediate;
    const result = run();
    if (retention) this.notifyAppended(retention.seq);
    return result;
  }

  /** Run a WAL checkpoint (truncating the WAL file). */
  checkpoint(): void {
    this.assertOpen('checkpoint');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  /** Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.db.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private assertOpen(op: string): void {
    if (this.closed) throw new ClosedError(`audit: ${op}`);
  }
}

function findSeqThatHashes(fields: ChainFields, hash: Buffer): number | undefined {
  // A row moved by a raw UPDATE of seq still hashes correctly under its original seq; look nearby.
  for (let d = 1; d <= 4096; d++) {
    for (const s of [fields.seq - d, fields.seq + d]) {
      if (s <= 0) continue;
      if (rowHash({ ...fields, seq: s }).equals(hash)) return s;
    }
  }
  return undefined;
}

type NameOf = (id: number) => string | undefined;

function resolve(ref: number | null, nameOf: NameOf): string | null {
  // a reference to a missing name reads as a value no writer could have hashed
  return ref === null ? null : (nameOf(ref) ?? `<missing name ${ref}>`);
}

function toFields(r: EventRow, nameOf: NameOf): ChainFields {
  return {
    seq: r.seq,
    prevHash: r.prev_hash,
    ts: r.ts,
    type: r.type,
    outcome: r.outcome,
    reason: r.reason,
    localId: resolve(r.local_ref, nameOf),
    remoteId: resolve(r.remote_ref, nameOf),
    node: resolve(r.node_ref, nameOf),
    direction: r.direction,
    details: r.details,
  };
}

function toEvent(r: EventRow, nameOf: NameOf): StoredAuditEvent {
  const e: StoredAuditEvent = {
    seq: r.seq,
    atMs: r.ts,
    // Unknown types (written by a newer build) are passed through as they are.
    type: r.type as AuditEventType,
    prevHash: r.prev_hash.toString('hex'),
    hash: r.hash.toString('hex'),
  };
  if (r.outcome !== null && isAuditOutcome(r.outcome)) e.outcome = r.outcome;
  if (r.reason !== null) e.reason = r.reason;
  const localId = resolve(r.local_ref, nameOf);
  const remoteId = resolve(r.remote_ref, nameOf);
  const node = resolve(r.node_ref, nameOf);
  if (localId !== null) e.localId = localId;
  if (remoteId !== null) e.remoteId = remoteId;
  if (node !== null) e.node = node;
  if (r.direction !== null) e.direction = r.direction as StoredAuditEvent['direction'];
  if (r.details !== null) {
    try {
      e.details = JSON.parse(r.details) as Record<string, unknown>;
    } catch {
      e.details = { unparsable: r.details };
    }
  }
  return e;
}

/** True when the identity filter is a glob pattern rather than an exact SPIFFE ID. */
export function isIdentityPattern(identity: string): boolean {
  return GLOB_CHARS.test(identity);
}

interface HeadRow {
  seq: number;
  hash: Buffer;
  max_ts: number;
  lateness_ms: number;
}

interface QueryPlan {
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

function buildQuery(q: AuditQuery, findName: (value: string) => number | undefined): QueryPlan {
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
