import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../../../src/api/index.js';
import { AuditStore, AuditWriter, rowHash, type AuditEventInput } from '../../../src/audit/index.js';
import { FakeDaemon } from '../api/fake-daemon.js';
import { buildDist, ROOT } from './build-dist.js';

/**
 * The CLI as a user runs it: `node bin/meshauth.js ...` in its own process, against a real API
 * server (real SQLite audit trail) with a fake daemon behind the DaemonView interface.
 */

const BIN = join(ROOT, 'bin', 'meshauth.js');
let dir: string;
let store: AuditStore;
let writer: AuditWriter;
let server: ApiServer;
let sock: string;
let daemon: FakeDaemon;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Spawn asynchronously: this process serves the API the child talks to. */
function meshauth(
  args: string[],
  opts: { env?: Record<string, string>; untilStdout?: RegExp; signalAfterMatch?: NodeJS.Signals } = {},
): Promise<Run> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, MESHAUTH_SOCKET: sock, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    let signalled = false;
    c.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (opts.untilStdout && !signalled && opts.untilStdout.test(stdout)) {
        signalled = true;
        c.kill(opts.signalAfterMatch ?? 'SIGINT');
      }
    });
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

const T0 = Date.now() - 3_600_000;
const seed: AuditEventInput[] = [
  {
    type: 'handshake-succeeded',
    outcome: 'success',
    localId: 'spiffe://a.test/ns/x/sa/web',
    remoteId: 'spiffe://b.test/ns/y/sa/db',
    node: 'node-2',
    direction: 'client',
    atMs: T0,
    details: { durationMs: 3, tlsVersion: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' },
  },
  {
    type: 'handshake-failed',
    outcome: 'failure',
    reason: 'svid-expired',
    localId: 'spiffe://a.test/ns/x/sa/web',
    remoteId: 'spiffe://b.test/ns/y/sa/a-much-longer-workload-name',
    node: 'node-3',
    direction: 'client',
    atMs: T0 + 60_000,
  },
  {
    type: 'entry-written',
    outcome: 'success',
    localId: 'spiffe://a.test/ns/x/sa/api',
    remoteId: 'spiffe://b.test/ns/y/sa/db',
    node: 'n4',
    atMs: T0 + 120_000,
  },
  { type: 'peer-unreachable', outcome: 'failure', reason: 'timeout', node: 'node-12345', atMs: T0 + 180_000 },
];

beforeAll(async () => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'meshauth-cli-spawn-'));
  sock = join(dir, 'api.sock');
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  writer = new AuditWriter(store, { flushIntervalMs: 5 });
  store.append(seed);
  daemon = new FakeDaemon();
  server = await startApiServer({ store, daemon, queue: writer, unix: { path: sock }, followPollMs: 50 });
}, 180_000);

afterAll(async () => {
  await server?.close();
  await writer?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Start offset of every column in the header line, checked against each data line. */
function expectAligned(out: string, header: string[]): string[] {
  const lines = out.trimEnd().split('\n');
  const starts = header.map((h) => lines[0]!.indexOf(h));
  expect(starts.every((s, i) => s >= 0 && (i === 0 || s > starts[i - 1]!))).toBe(true);
  for (const l of lines.slice(1)) {
    for (const [i, s] of starts.entries()) {
      if (i === 0) continue;
      // an empty last column is trimmed away
      if (i === starts.length - 1 && l.length <= s) continue;
      // a column starts after two spaces of padding, at the header's offset
      expect(l.slice(s - 2, s)).toBe('  ');
      expect(l[s]).not.toBe(' ');
    }
  }
  return lines;
}

describe('meshauth binary against a running API', () => {
  it('events: aligned table with a header, filters, newest last', async () => {
    const r = await meshauth(['events']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = expectAligned(r.stdout, [
      'TIME',
      'SEQ',
      'TYPE',
      'OUTCOME',
      'REASON',
      'LOCAL',
      'REMOTE',
      'NODE',
      'DIR',
      'DETAILS',
    ]);
    expect(lines).toHaveLength(5);
    expect(lines[1]).toContain('tlsVersion=TLSv1.3');
    expect(lines[4]).toMatch(/peer-unreachable\s+failure\s+timeout/);
    const f = await meshauth(['events', '--outcome', 'failure', '--node', 'node-3']);
    expect(f.stdout.trimEnd().split('\n')).toHaveLength(2);
    expect(f.stdout).toContain('svid-expired');
  });

  it('events -o json: one parseable object per line, with the filter applied', async () => {
    const r = await meshauth([
      'events',
      '-o',
      'json',
      '--identity',
      'spiffe://b.test/ns/y/*',
      '--since',
      '2h',
    ]);
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.at(-1)).toBe('');
    const objs = lines.slice(0, -1).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs.map((o) => o['seq'])).toEqual([1, 2, 3]);
    expect(objs[0]).toMatchObject({
      type: 'handshake-succeeded',
      details: { cipher: 'TLS_AES_128_GCM_SHA256' },
    });
    expect(typeof objs[0]!['hash']).toBe('string');
  });

  it('events --follow prints new events as the daemon writes them and stops on Ctrl-C', async () => {
    const p = meshauth(['events', '--follow', '-o', 'json', '--type', 'reauth'], {
      untilStdout: /"seq":\d+.*\n.*"seq":\d+.*\n/,
    });
    // give the child time to connect, then write while it follows
    await new Promise((r) => setTimeout(r, 1500));
    writer.record({ type: 'signal', outcome: 'info', localId: 'spiffe://a.test/ns/x/sa/web' });
    writer.record({
      type: 'reauth',
      outcome: 'info',
      localId: 'spiffe://a.test/ns/x/sa/web',
      reason: 'rotation',
    });
    await new Promise((r) => setTimeout(r, 100));
    writer.record({
      type: 'reauth',
      outcome: 'info',
      localId: 'spiffe://a.test/ns/x/sa/api',
      reason: 'expiry',
    });
    const r = await p;
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const objs = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs.map((o) => o['reason'])).toEqual(['rotation', 'expiry']);
  }, 30_000);

  it('entries and status: aligned tables; entries -o json one per line', async () => {
    const e = await meshauth(['entries']);
    expect(e.status).toBe(0);
    const lines = expectAligned(e.stdout, ['LOCAL', 'REMOTE', 'NODE', 'EXPIRES', 'TTL']);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toContain('(local)');
    const j = await meshauth(['entries', '-o', 'json']);
    const objs = j.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs).toHaveLength(2);
    expect(objs[0]).toMatchObject({
      remoteId: 'spiffe://b.test/ns/y/sa/db',
      remoteNode: 'node-2',
      expires: '2030-03-17T17:46:40.000Z',
    });
    const s = await meshauth(['status']);
    expect(s.status).toBe(0);
    expect(s.stdout).toMatch(/^node\s+node-1$/m);
    expect(s.stdout).toMatch(/^datapath\s+attached \(tc\) eth0,veth1$/m);
    expect(s.stdout).toMatch(/^audit events\s+\d+ stored, last seq \d+/m);
    expect(s.stdout).toMatch(/^IDENTITY\s+NOT AFTER\s+EXPIRES IN$/m);
  });

  it('flush --pair and --all remove entries through the daemon', async () => {
    const r = await meshauth(['flush', '--pair', 'spiffe://a.test/ns/x/sa/web,spiffe://b.test/ns/y/sa/db']);
    expect(r).toMatchObject({ status: 0, stdout: 'removed 1 entry\n' });
    expect(daemon.flushes.at(-1)).toEqual({
      localId: 'spiffe://a.test/ns/x/sa/web',
      remoteId: 'spiffe://b.test/ns/y/sa/db',
    });
    expect(await meshauth(['flush', '--all'])).toMatchObject({ status: 0, stdout: 'removed 1 entry\n' });
    const bad = await meshauth(['flush', '--all', '--pair', 'a,b']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/exactly one of --pair/);
  });

  it('--help explains every command with examples; unknown commands are usage errors', async () => {
    const h = await meshauth(['--help']);
    expect(h.status).toBe(0);
    for (const cmd of ['events', 'entries', 'status', 'flush', 'audit'])
      expect(h.stdout).toMatch(new RegExp(`^  ${cmd}\\b`, 'm'));
    expect(h.stdout).toMatch(/--socket <path>/);
    expect(h.stdout).toMatch(/Examples:/);
    const e = await meshauth(['events', '--help']);
    for (const flag of ['--follow', '--identity', '--node', '--outcome', '--since', '-o, --output'])
      expect(e.stdout).toContain(flag);
    const v = await meshauth(['audit', 'verify', '--help']);
    expect(v.stdout).toMatch(/Exit status: 0 when the chain is intact, 1 when it is not/);
    const u = await meshauth(['evnts']);
    expect(u.status).not.toBe(0);
    expect(u.stderr).toMatch(/unknown command 'evnts'/);
  });

  it('says which socket it tried when the daemon is down', async () => {
    const r = await meshauth(['status'], { env: { MESHAUTH_SOCKET: join(dir, 'gone.sock') } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^meshauth: cannot reach meshauthd on unix socket \/.*gone\.sock: no such socket \(connect ENOENT\)\n {2}is meshauthd running\? \(use --socket or MESHAUTH_SOCKET to point elsewhere\)\n$/,
    );
    expect(r.stderr).not.toMatch(/Resolution note/);
  });
});

describe('meshauth audit verify (spawned) on a real database file', () => {
  const events = (n: number): AuditEventInput[] =>
    Array.from({ length: n }, (_, i) => ({
      type: 'handshake-succeeded',
      outcome: 'success',
      localId: `spiffe://a.test/w${i % 3}`,
      remoteId: 'spiffe://a.test/db',
      node: 'node-2',
      atMs: T0 + i * 1000,
    }));

  function freshDb(name: string, n = 20): string {
    const path = join(dir, name);
    const s = AuditStore.open({ path });
    s.append(events(n));
    s.close();
    return path;
  }

  function tamper(path: string, sql: string): void {
    const db = new Database(path);
    db.exec(sql);
    db.close();
  }

  it('OK on an intact chain, through the daemon and with --db', async () => {
    writer.flush();
    const viaDaemon = await meshauth(['audit', 'verify']);
    expect(viaDaemon.status).toBe(0);
    expect(viaDaemon.stdout).toMatch(/^audit chain OK: \d+ events verified \(seq 1\.\.\d+\)/);
    const path = freshDb('intact.db');
    const r = await meshauth(['audit', 'verify', '--db', path, '-o', 'json']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, checked: 20, firstSeq: 1, lastSeq: 20 });
  });

  it('names the seq of an edited, a deleted and a reordered row', async () => {
    const edited = freshDb('edited.db');
    tamper(
      edited,
      `INSERT INTO names (value) VALUES ('spiffe://a.test/other');
       UPDATE events SET remote_ref = last_insert_rowid() WHERE seq = 7`,
    );
    let r = await meshauth(['audit', 'verify', '--db', edited]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^audit chain BROKEN at seq 7 \(edited\)/);
    expect(r.stdout).toMatch(/6 events before it verified/);

    const deleted = freshDb('deleted.db');
    tamper(deleted, 'DELETE FROM events WHERE seq = 12');
    r = await meshauth(['audit', 'verify', '--db', deleted]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/BROKEN at seq 12 \(deleted\): audit verify: seq 12 is missing/);

    const reordered = freshDb('reordered.db');
    tamper(
      reordered,
      'UPDATE events SET seq = -1 WHERE seq = 4; UPDATE events SET seq = 4 WHERE seq = 9; UPDATE events SET seq = 9 WHERE seq = -1;',
    );
    r = await meshauth(['audit', 'verify', '--db', reordered, '-o', 'json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, problem: { seq: 4, kind: 'reordered' } });

    const truncated = freshDb('truncated.db');
    tamper(truncated, 'DELETE FROM events WHERE seq > 15');
    r = await meshauth(['audit', 'verify', '--db', truncated]);
    expect(r.stdout).toMatch(/BROKEN at seq 16 \(truncated\)/);
  });

  it('prints the head, and a checkpoint catches a tail rewritten with recomputed hashes', async () => {
    const path = freshDb('rewritten.db');
    const ok = await meshauth(['audit', 'verify', '--db', path]);
    expect(ok.status).toBe(0);
    const head = /head: (20:[0-9a-f]{64})/.exec(ok.stdout)?.[1];
    expect(head).toBeDefined();
    const mid = JSON.parse((await meshauth(['audit', 'verify', '--db', path, '-o', 'json'])).stdout) as {
      lastHash: string;
    };
    expect(`20:${mid.lastHash}`).toBe(head);
    const s = AuditStore.open({ path });
    const at12 = s.query({ afterSeq: 11, limit: 1 })[0]!;
    s.close();
    // rewrite seq 12 on: flip its outcome and recompute every hash after it, head included
    const db = new Database(path);
    const rows = db.prepare('SELECT * FROM event_rows WHERE seq >= 12 ORDER BY seq').all() as Record<
      string,
      unknown
    >[];
    const prev = db.prepare('SELECT hash FROM events WHERE seq = 11').get() as { hash: Buffer };
    let prevHash = prev.hash;
    db.prepare(`UPDATE events SET outcome = 'failure' WHERE seq = 12`).run();
    for (const r of rows) {
      const h = rowHash({
        seq: r['seq'] as number,
        prevHash,
        ts: r['ts'] as number,
        type: r['type'] as string,
        outcome: r['seq'] === 12 ? 'failure' : (r['outcome'] as string | null),
        reason: r['reason'] as string | null,
        localId: r['local_id'] as string | null,
        remoteId: r['remote_id'] as string | null,
        node: r['node'] as string | null,
        direction: r['direction'] as string | null,
        details: r['details'] as string | null,
      });
      db.prepare('UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?').run(prevHash, h, r['seq']);
      prevHash = h;
    }
    db.prepare('UPDATE chain_head SET hash = ? WHERE id = 1').run(prevHash);
    db.close();
    expect(at12.outcome).not.toBe('failure');
    // the chain alone cannot tell
    expect((await meshauth(['audit', 'verify', '--db', path])).status).toBe(0);
    const caught = await meshauth(['audit', 'verify', '--db', path, '--checkpoint', head!]);
    expect(caught.status).toBe(1);
    expect(caught.stdout).toMatch(/BROKEN at seq 20 \(checkpoint\)/);
    const bad = await meshauth(['audit', 'verify', '--db', path, '--checkpoint', '20:zz']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(
      /option '--checkpoint <seq:hash>' argument '20:zz' is invalid\. expected <seq>:<hash>/,
    );
  });

  it('stays OK after retention by age and by size', async () => {
    const path = freshDb('retained.db', 3000);
    const s = AuditStore.open({ path });
    // events 0..1999 are older than 1000 s at T0 + 3000 s
    expect(s.prune({ maxAgeMs: 1000 * 1000 }, T0 + 3000 * 1000).deleted).toBe(2000);
    const bytes = s.stats().bytes;
    s.append(events(3000).map((e) => ({ ...e, details: { pad: 'p'.repeat(300) } })));
    expect(s.prune({ maxBytes: bytes }).deleted).toBeGreaterThan(0);
    s.close();
    const r = await meshauth(['audit', 'verify', '--db', path]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/audit chain OK: .* continuing from retention anchor seq \d+/);
    // retention cannot be used to hide a row: deleting the first kept row is still reported
    const s2 = AuditStore.open({ path, readonly: true });
    const first = s2.stats().firstSeq!;
    s2.close();
    tamper(path, `DELETE FROM events WHERE seq = ${first}`);
    const bad = await meshauth(['audit', 'verify', '--db', path]);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toContain(`BROKEN at seq ${first} (deleted)`);
  });
});
