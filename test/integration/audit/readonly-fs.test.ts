/**
 * An audit trail on a file system mounted read-only (a forensic copy, a volume snapshot, a
 * mistake in the DaemonSet): opening it says so, read-write and read-only, instead of SQLite's
 * "unable to open database file".
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditStore } from '../../../src/audit/index.js';

let dir: string;
let mnt: string;
let mounted = false;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-audit-rofs-'));
  mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
  mounted = true;
  const s = AuditStore.open({ path: join(mnt, 'audit.db') });
  s.append([{ type: 'peer-unreachable', outcome: 'failure', reason: 'timeout', atMs: 1 }]);
  s.close(); // a clean close leaves no -wal or -shm file
  execFileSync('mount', ['-o', 'remount,ro', mnt]);
});

afterAll(() => {
  if (mounted) execFileSync('umount', [mnt]);
  rmSync(dir, { recursive: true, force: true });
});

describe('AuditStore.open on a read-only file system', () => {
  it('regression: read-write and read-only opens name the read-only file system and what to do', () => {
    const path = join(mnt, 'audit.db');
    expect(() => AuditStore.open({ path })).toThrow(
      `audit: open ${path}: its directory is on a read-only file system; audit.path must be writable`,
    );
    // before: "unable to open database file", for `meshauth audit verify --db` as well
    expect(() => AuditStore.open({ path, readonly: true })).toThrow(
      `audit: open ${path}: its directory is on a read-only file system, where SQLite cannot create ${path}-shm, which it needs to read a WAL-mode database: copy the file to a writable directory and use the copy`,
    );
  });
});
