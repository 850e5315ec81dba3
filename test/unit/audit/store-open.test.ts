/**
 * AuditStore.open on files that are not a usable audit trail: another program's SQLite database,
 * an empty file, a directory, garbage, a truncated trail. Each is refused with a sentence naming
 * the file and what to do, and nothing is written into another program's database.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditStore, type AuditEventInput } from '../../../src/audit/index.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-store-open-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function openError(path: string, readonly: boolean): Error & { code?: string } {
  try {
    AuditStore.open({ path, readonly }).close();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error(`AuditStore.open(${path}, readonly ${readonly}) did not fail`);
}

const EVENT: AuditEventInput = { type: 'peer-unreachable', outcome: 'failure', reason: 'timeout', atMs: 1 };

describe('AuditStore.open refuses what is not an audit trail', () => {
  it("regression: another program's database is refused and left unchanged, read-write or read-only", () => {
    const path = join(dir, 'app.db');
    const other = new Database(path);
    other.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'x')");
    other.close();
    const before = readFileSync(path);
    // before: read-write, the trail's tables were added to it ("migrated"); read-only (audit
    // verify --db), "schema version 0 is older than this build's; ... start meshauthd to migrate it"
    for (const readonly of [false, true]) {
      const err = openError(path, readonly);
      expect(err.code).toBe('MESHAUTH_ERR_AUDIT_SCHEMA');
      expect(err.message).toBe(
        `audit: open ${path}: not a meshauth audit trail: an SQLite database of something else (tables users); point audit.path at a new file or at an audit trail`,
      );
    }
    expect(readFileSync(path)).toEqual(before);
  });

  it('regression: an empty database read-only is "empty", not "older, start meshauthd to migrate"', () => {
    const path = join(dir, 'empty.db');
    writeFileSync(path, '');
    const err = openError(path, true);
    expect(err.message).toBe(
      `audit: open ${path}: not a meshauth audit trail: the database is empty (no trail was ever written to it)`,
    );
    expect(err.message).not.toContain('migrate');
    // read-write, an empty file is a new trail
    const s = AuditStore.open({ path });
    expect(s.append([EVENT])[0]!.seq).toBe(1);
    s.close();
  });

  it('regression: a directory is named as one (SQLite said "disk I/O error")', () => {
    const path = join(dir, 'audit.db');
    mkdirSync(path);
    for (const readonly of [false, true]) {
      const err = openError(path, readonly);
      expect(err.code).toBe('MESHAUTH_ERR_AUDIT_STORE');
      expect(err.message).toBe(`audit: open ${path}: is a directory, not a database file`);
    }
  });

  it('garbage and a truncated trail are refused with what to do', () => {
    const junk = join(dir, 'junk.db');
    writeFileSync(junk, 'not sqlite at all, just some text that is long enough to have a header'.repeat(20));
    for (const readonly of [false, true]) {
      expect(openError(junk, readonly).message).toBe(
        `audit: open ${junk}: not an SQLite database (some other file?); point audit.path at a new file or at an audit trail`,
      );
    }

    const path = join(dir, 'cut.db');
    const s = AuditStore.open({ path });
    for (let i = 0; i < 20; i++)
      s.append(Array.from({ length: 200 }, (_, j) => ({ ...EVENT, atMs: i * 200 + j })));
    s.close(); // checkpoints the WAL into the file
    truncateSync(path, Math.floor(statSync(path).size / 2));
    for (const readonly of [false, true]) {
      const err = openError(path, readonly);
      expect(err.code).toBe('MESHAUTH_ERR_AUDIT_STORE');
      expect(err.message).toMatch(
        new RegExp(
          `^audit: open ${path}: the database file is damaged \\(truncated or overwritten: "database disk image is malformed"\\); move it aside`,
        ),
      );
    }
  });

  it('a trail of this schema still opens both ways', () => {
    const path = join(dir, 'audit.db');
    const s = AuditStore.open({ path });
    s.append([EVENT]);
    s.close();
    const ro = AuditStore.open({ path, readonly: true });
    expect(ro.lastSeq()).toBe(1);
    ro.close();
    const rw = AuditStore.open({ path });
    expect(rw.append([EVENT])[0]!.seq).toBe(2);
    rw.close();
  });
});
