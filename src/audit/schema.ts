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

/** Bring the database to SCHEMA_VERSION. Returns the migrations applied. */
export function migrate(db: Database.Database, path: string): number {
  const current = schemaVersion(db);
  if (current > SCHEMA_VERSION) {
    throw new AuditSchemaError(
      `audit: open ${path}: schema version ${current} is newer than this build supports (${SCHEMA_VERSION})`,
    );
  }
  let applied = 0;
  for (let v = current; v < SCHEMA_VERSION; v++) {
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
