import { accessSync, constants, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ClosedError } from '../errors.js';
import { canonicalJson, rowHash, type ChainFields } from './canonical.js';
import { AuditSchemaError, AuditStoreError } from './errors.js';
import type { StoredAuditEvent } from './event.js';
import { NameTable } from './names.js';
import { buildQuery, runQuery, type AuditQuery, type QueryContext } from './query.js';
import { applyRetention, type RetentionPolicy, type RetentionResult } from './retention.js';
import { toEvent, type EventRow, type HeadRow } from './rows.js';
import { migrate, notAnAuditTrail, schemaVersion, SCHEMA_VERSION, tablesOfAnotherSchema } from './schema.js';
import type { AuditEventInput } from './sink.js';
import { checkCheckpoints, verifyChainRows, type ChainCheckpoint, type ChainReport } from './verify.js';
import { makeDirsSync } from '../make-dirs.js';

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

export interface AuditStoreStats {
  rows: number;
  firstSeq: number | null;
  lastSeq: number;
  anchorSeq: number;
  /** Bytes used by live pages. */
  bytes: number;
}

/** True when `dir` is on a file system mounted read-only. */
function onReadOnlyFileSystem(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EROFS';
  }
}

/**
 * Why a database file could not be opened, in words an operator can act on: SQLite's own
 * messages ("file is not a database", "database disk image is malformed") say what it found, not
 * what to do.
 */
function openFailure(err: unknown, path: string, readonly: boolean): string {
  const e = err as { code?: string; message?: string };
  switch (e.code) {
    case 'SQLITE_CANTOPEN':
      // SQLite says only "unable to open database file"; a read-only file system is the usual
      // cause: read-write the trail cannot be written there, and even read-only a WAL-mode
      // database needs its -shm file beside it
      if (onReadOnlyFileSystem(dirname(path)))
        return readonly
          ? `its directory is on a read-only file system, where SQLite cannot create ${path}-shm, which it needs to read a WAL-mode database: copy the file to a writable directory and use the copy`
          : 'its directory is on a read-only file system; audit.path must be writable';
      return e.message ?? String(err);
    case 'SQLITE_NOTADB':
      return 'not an SQLite database (some other file?); point audit.path at a new file or at an audit trail';
    case 'SQLITE_CORRUPT':
      return 'the database file is damaged (truncated or overwritten: "database disk image is malformed"); move it aside to start a new trail, and keep it for inspection';
    default:
      return e.message ?? String(err);
  }
}

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
  /** The statements and settings queries run with (see runQuery). */
  private readonly queryContext: QueryContext;
  /** Seq of the last row the latest append wrote. */
  private appendedSeq = 0;

  private constructor(db: Database.Database, path: string, readonly: boolean, scanWindow: number) {
    this.db = db;
    this.path = path;
    this.readHead = db.prepare('SELECT seq, hash, max_ts, lateness_ms FROM chain_head WHERE id = 1');
    this.names = new NameTable(db, !readonly);
    this.queryContext = {
      db,
      scanWindow,
      latenessMs: () => (this.readHead.get() as HeadRow).lateness_ms,
      // time bound → seq bound seeks on events_ts
      lastBefore: db.prepare('SELECT seq FROM events WHERE ts < ? ORDER BY ts DESC LIMIT 1'),
      firstFrom: db.prepare('SELECT seq FROM events WHERE ts >= ? ORDER BY ts ASC LIMIT 1'),
    };
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
      if (!readonly) makeDirsSync(dirname(opts.path), 0o700);
      // SQLite calls a directory a "disk I/O error"
      if (statSync(opts.path, { throwIfNoEntry: false })?.isDirectory())
        throw Object.assign(new Error('is a directory, not a database file'), { code: 'EISDIR' });
      db = new Database(opts.path, { readonly, fileMustExist: readonly });
    } catch (err) {
      throw new AuditStoreError(`audit: open ${opts.path}: ${openFailure(err, opts.path, readonly)}`, {
        cause: err,
      });
    }
    try {
      db.pragma('busy_timeout = 5000');
      // another program's database (a mistyped audit.path) is left exactly as it is: not even
      // switched to WAL, let alone given the trail's tables
      const foreign = tablesOfAnotherSchema(db);
      if (foreign.length > 0) throw notAnAuditTrail(opts.path, foreign);
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
        if (v === 0) {
          // no meshauth schema and no tables (another program's were refused above)
          throw new AuditSchemaError(
            `audit: open ${opts.path}: not a meshauth audit trail: the database is empty (no trail was ever written to it)`,
          );
        }
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
      throw new AuditStoreError(`audit: open ${opts.path}: ${openFailure(err, opts.path, readonly)}`, {
        cause: err,
      });
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
        .transaction(() => runQuery(this.queryContext, plan))()
        .map((r) => toEvent(r, (id) => this.names.value(id)));
    } catch (err) {
      throw new AuditStoreError(`audit: query ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The chain head now: seq of the last row appended (0 when empty) and its hash (genesis when empty). */
  head(): { seq: number; hash: Buffer } {
    this.assertOpen('head');
    const h = this.readHead.get() as HeadRow;
    return { seq: h.seq, hash: Buffer.from(h.hash) };
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
   * Walk the whole chain (see verifyChainRows, which does the checking). Reports the first row that is inconsistent and why:
   * edited (its hash no longer matches its fields), deleted (a seq is missing), reordered (the row
   * hashes correctly only under another seq), broken-link (prev_hash is not the previous row's hash:
   * a neighbour was rewritten with a recomputed hash), truncated (rows after the last one are
   * missing), anchor (the first row does not continue from the retention anchor), checkpoint (the
   * row at a checkpoint's seq does not have the hash recorded then: the trail was rewritten from
   * there on and its hashes recomputed, which the chain alone cannot show).
   */
  verifyChain(checkpoints: readonly ChainCheckpoint[] = []): ChainReport {
    this.assertOpen('verifyChain');
    checkCheckpoints(checkpoints);
    // one read transaction: head, anchor and rows from the same snapshot while a writer appends
    return this.db.transaction(() => {
      const names = this.names.snapshot();
      return verifyChainRows({
        anchor: this.db.prepare('SELECT seq, hash FROM chain_anchor WHERE id = 1').get() as {
          seq: number;
          hash: Buffer;
        },
        head: this.readHead.get() as HeadRow,
        rows: this.db.prepare('SELECT * FROM events ORDER BY seq').iterate() as IterableIterator<EventRow>,
        nameOf: (id) => names.get(id),
        checkpoints,
      });
    })();
  }

  /** Apply a retention policy: delete the oldest rows and move the chain anchor past them. */
  prune(policy: RetentionPolicy, now = Date.now()): RetentionResult {
    this.assertOpen('prune');
    if (!this.appendTx) throw new AuditStoreError(`audit: prune ${this.path}: store is read-only`);
    const run = this.db.transaction(() =>
      applyRetention(
        {
          db: this.db,
          usedBytes: () => this.usedBytes(),
          append: (event) => this.appendRows([event])[0]!,
        },
        policy,
        now,
      ),
    ).immediate;
    const { retention, ...result } = run();
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
