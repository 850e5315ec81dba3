import type Database from 'better-sqlite3';
import { AuditSchemaError } from './errors.js';

/**
 * Migrations, applied in order inside one transaction each. The schema version is kept in a
 * `schema_version` table (one row) and mirrored in PRAGMA user_version for tools such as sqlite3.
 * Never edit a released migration: append a new one.
 */
const MIGRATIONS: readonly string[] = [
  // 1: events + chain anchor/head
  `
  CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,
    type       TEXT NOT NULL,
    outcome    TEXT,
    reason     TEXT,
    local_id   TEXT,
    remote_id  TEXT,
    node       TEXT,
    direction  TEXT,
    details    TEXT,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL
  );
  CREATE INDEX events_ts ON events(ts);
  CREATE INDEX events_type ON events(type);
  CREATE INDEX events_outcome ON events(outcome);
  CREATE INDEX events_reason ON events(reason);
  CREATE INDEX events_local_id ON events(local_id);
  CREATE INDEX events_remote_id ON events(remote_id);
  CREATE INDEX events_node ON events(node);
  -- Where the stored chain starts: seq and hash of the last row deleted by retention (0 / zeros at first).
  CREATE TABLE chain_anchor (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    at_ms INTEGER NOT NULL
  );
  -- Last appended row, updated in the same transaction as every append (detects a truncated tail).
  CREATE TABLE chain_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL
  );
  `,
  // 2: fewer, sharper indexes (every index costs on each insert). Type and outcome alone are too
  // coarse to help; reason is mostly NULL; failures are looked up by node.
  `
  DROP INDEX events_type;
  DROP INDEX events_outcome;
  DROP INDEX events_reason;
  DROP INDEX events_node;
  CREATE INDEX events_reason ON events(reason) WHERE reason IS NOT NULL;
  CREATE INDEX events_node ON events(node, outcome);
  `,
  // 3: SPIFFE IDs and node names stored once in \`names\` and referenced by integer (smaller rows
  // and index entries, so faster inserts); \`event_rows\` shows rows with the text resolved. The
  // chain head also tracks the highest event time and how far any event's time has lagged behind
  // it (\`lateness_ms\`), which lets time-bounded queries start at the right seq.
  `
  CREATE TABLE names (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    value TEXT NOT NULL UNIQUE
  );
  INSERT INTO names (value)
    SELECT local_id FROM events WHERE local_id IS NOT NULL
    UNION SELECT remote_id FROM events WHERE remote_id IS NOT NULL
    UNION SELECT node FROM events WHERE node IS NOT NULL;
  CREATE TABLE events_v3 (
    seq        INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,
    type       TEXT NOT NULL,
    outcome    TEXT,
    reason     TEXT,
    local_ref  INTEGER,
    remote_ref INTEGER,
    node_ref   INTEGER,
    direction  TEXT,
    details    TEXT,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL
  );
  INSERT INTO events_v3
    SELECT e.seq, e.ts, e.type, e.outcome, e.reason, l.id, r.id, n.id, e.direction, e.details, e.prev_hash, e.hash
    FROM events e
    LEFT JOIN names l ON l.value = e.local_id
    LEFT JOIN names r ON r.value = e.remote_id
    LEFT JOIN names n ON n.value = e.node
    ORDER BY e.seq;
  DROP TABLE events;
  ALTER TABLE events_v3 RENAME TO events;
  CREATE INDEX events_ts ON events(ts);
  CREATE INDEX events_local ON events(local_ref);
  CREATE INDEX events_remote ON events(remote_ref);
  CREATE INDEX events_node ON events(node_ref, outcome);
  CREATE INDEX events_reason ON events(reason) WHERE reason IS NOT NULL;
  CREATE VIEW event_rows AS
    SELECT e.seq, e.ts, e.type, e.outcome, e.reason,
           l.value AS local_id, r.value AS remote_id, n.value AS node,
           e.direction, e.details, e.prev_hash, e.hash
    FROM events e
    LEFT JOIN names l ON l.id = e.local_ref
    LEFT JOIN names r ON r.id = e.remote_ref
    LEFT JOIN names n ON n.id = e.node_ref;
  ALTER TABLE chain_head ADD COLUMN max_ts INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE chain_head ADD COLUMN lateness_ms INTEGER NOT NULL DEFAULT 0;
  UPDATE chain_head SET
    max_ts = coalesce((SELECT max(ts) FROM events), 0),
    lateness_ms = coalesce((
      SELECT max(m - ts) FROM (
        SELECT ts, max(ts) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS m
        FROM events)
      WHERE m > ts), 0);
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Current schema version of an open database (0 = empty). */
export function schemaVersion(db: Database.Database): number {
  const has = db
    .prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'`)
    .get();
  if (!has) return 0;
  const row = db.prepare('SELECT version FROM schema_version WHERE id = 1').get() as
    { version: number } | undefined;
  return row?.version ?? 0;
}

/**
 * Tables of a database that has no meshauth schema (version 0): any table there belongs to
 * something else. Empty for a new (or empty) file.
 */
export function tablesOfAnotherSchema(db: Database.Database): string[] {
  if (schemaVersion(db) !== 0) return [];
  return (
    db
      .prepare(
        `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`,
      )
      .all() as { name: string }[]
  ).map((r) => r.name);
}

/** The refusal of a database that holds something other than an audit trail. */
export function notAnAuditTrail(path: string, tables: readonly string[]): AuditSchemaError {
  const shown = tables.slice(0, 5).join(', ') + (tables.length > 5 ? `, ... (${tables.length} tables)` : '');
  return new AuditSchemaError(
    `audit: open ${path}: not a meshauth audit trail: an SQLite database of something else (tables ${shown}); point audit.path at a new file or at an audit trail`,
  );
}

/** Bring the database to SCHEMA_VERSION (or to `target`, for tests of older files). Returns the migrations applied. */
export function migrate(db: Database.Database, path: string, target = SCHEMA_VERSION): number {
  const current = schemaVersion(db);
  if (current > SCHEMA_VERSION) {
    throw new AuditSchemaError(
      `audit: open ${path}: schema version ${current} is newer than this build supports (${SCHEMA_VERSION})`,
    );
  }
  // never add the trail's tables to another program's database (a mistyped audit.path)
  const foreign = tablesOfAnotherSchema(db);
  if (foreign.length > 0) throw notAnAuditTrail(path, foreign);
  let applied = 0;
  for (let v = current; v < Math.min(target, SCHEMA_VERSION); v++) {
    db.transaction(() => {
      if (v === 0) {
        db.exec(
          'CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)',
        );
        db.prepare('INSERT INTO schema_version (id, version) VALUES (1, 0)').run();
      }
      db.exec(MIGRATIONS[v]!);
      if (v === 0) {
        db.prepare('INSERT INTO chain_anchor (id, seq, hash, at_ms) VALUES (1, 0, ?, ?)').run(
          Buffer.alloc(32),
          Date.now(),
        );
        db.prepare('INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, ?)').run(Buffer.alloc(32));
      }
      db.prepare('UPDATE schema_version SET version = ? WHERE id = 1').run(v + 1);
      db.pragma(`user_version = ${v + 1}`);
    })();
    applied++;
  }
  return applied;
}
