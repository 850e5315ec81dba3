import { spawnSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../../../src/api/index.js';
import { AuditStore, AuditWriter } from '../../../src/audit/index.js';
import { run, type CliIo } from '../../../src/cli/main.js';
import { DevCa } from '../../../src/identity/index.js';
import { FakeDaemon } from '../api/fake-daemon.js';
import { until } from '../../helpers/until.js';
import { buildDist, CLI_JS, ROOT } from './build-dist.js';

let dir: string;
let store: AuditStore;
let writer: AuditWriter;
let server: ApiServer;
let sock: string;
const daemon = new FakeDaemon();
const NOW = Date.parse('2026-06-01T12:00:00Z');

async function cli(
  args: string[],
  signal?: AbortSignal,
  onOut?: (t: string) => void,
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    out: (t) => {
      out += t;
      onOut?.(t);
    },
    err: (t) => (err += t),
    env: { MESHAUTH_SOCKET: sock },
    now: () => NOW,
    ...(signal ? { signal } : {}),
  };
  const code = await run(args, io);
  return { code, out, err };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-cli-'));
  sock = join(dir, 'api.sock');
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  writer = new AuditWriter(store, { flushIntervalMs: 5 });
  store.append([
    {
      type: 'handshake-succeeded',
      outcome: 'success',
      localId: 'spiffe://a.test/ns/x/sa/web',
      remoteId: 'spiffe://b.test/ns/y/sa/db',
      node: 'node-2',
      direction: 'client',
      atMs: NOW - 3_600_000,
      details: { durationMs: 3, tlsVersion: 'TLSv1.3' },
    },
    {
      type: 'handshake-failed',
      outcome: 'failure',
      reason: 'svid-expired',
      localId: 'spiffe://a.test/ns/x/sa/web',
      remoteId: 'spiffe://b.test/ns/y/sa/cache-long-name',
      node: 'node-3',
      direction: 'client',
      atMs: NOW - 60_000,
    },
    {
      type: 'entry-written',
      outcome: 'success',
      localId: 'spiffe://a.test/ns/x/sa/api',
      node: 'node-2',
      atMs: NOW - 30_000,
    },
  ]);
  server = await startApiServer({ store, daemon, queue: writer, unix: { path: sock }, followPollMs: 50 });
});

afterAll(async () => {
  await server?.close();
  await writer?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('meshauth CLI (in process, real daemon API)', () => {
  it('prints events as an aligned table', async () => {
    const r = await cli(['events']);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(
      /^TIME\s+SEQ\s+TYPE\s+OUTCOME\s+REASON\s+LOCAL\s+REMOTE\s+NODE\s+DIR\s+DETAILS$/,
    );
    // every column starts at the same offset on every line
    const col = (l: string) => l.indexOf('spiffe://');
    expect(new Set(lines.slice(1).map(col)).size).toBe(1);
    expect(lines[0]!.indexOf('LOCAL')).toBe(col(lines[1]!));
    expect(lines[2]).toContain('svid-expired');
    expect(lines[1]).toContain('tlsVersion=TLSv1.3');
  });

  it('filters and prints one JSON object per line', async () => {
    const r = await cli(['events', '--outcome', 'failure', '--since', '10m', '-o', 'json']);
    expect(r.code).toBe(0);
    const objs = r.out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs).toHaveLength(1);
    expect(objs[0]).toMatchObject({
      seq: 2,
      type: 'handshake-failed',
      reason: 'svid-expired',
      node: 'node-3',
    });
    const byId = await cli(['events', '--identity', 'spiffe://b.test/*', '-o', 'json']);
    expect(byId.out.trimEnd().split('\n')).toHaveLength(2);
    const none = await cli(['events', '--node', 'node-9', '-o', 'json']);
    expect(none.out).toBe('');
  });

  it('--limit shows the newest N in time order', async () => {
    const r = await cli(['events', '--limit', '2', '-o', 'json']);
    expect(
      r.out
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { seq: number }).seq),
    ).toEqual([2, 3]);
  });

  it('rejects bad arguments with usage status 2 and a clear message', async () => {
    let r = await cli(['events', '--since', 'yesterday']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--since: "yesterday" is neither a duration/);
    r = await cli(['events', '--outcome', 'maybe']);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/Allowed choices are success, failure, info/);
    r = await cli(['events', '--identity', 'web']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/invalid request: .*spiffe:\/\//);
    r = await cli(['flush']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/exactly one of --pair/);
    r = await cli(['flush', '--pair', 'onlyone']);
    expect(r.err).toMatch(/--pair must be/);
  });

  it('lists entries and status', async () => {
    const r = await cli(['entries']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^LOCAL\s+REMOTE\s+NODE\s+EXPIRES\s+TTL\n/);
    expect(r.out).toContain('(local)');
    const j = await cli(['entries', '-o', 'json']);
    expect(
      j.out
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as { remoteNode: string })[0]!.remoteNode,
    ).toBe('node-2');
    const s = await cli(['status']);
    expect(s.code).toBe(0);
    expect(s.out).toMatch(/datapath\s+attached \(tc\)/);
    expect(s.out).toMatch(/audit events\s+3 stored, last seq 3/);
    expect(s.out).toMatch(/drop_auth_required\s+3/);
    const sj = await cli(['status', '-o', 'json']);
    expect(JSON.parse(sj.out)).toMatchObject({ node: 'node-1', audit: { lastSeq: 3 } });
  });

  it('flushes a pair and all', async () => {
    const r = await cli([
      'flush',
      '--pair',
      'spiffe://a.test/ns/x/sa/web,spiffe://b.test/ns/y/sa/db',
      '--node',
      'node-2',
    ]);
    expect(r).toMatchObject({ code: 0, out: 'removed 1 entry\n' });
    expect(daemon.flushes.at(-1)).toEqual({
      localId: 'spiffe://a.test/ns/x/sa/web',
      remoteId: 'spiffe://b.test/ns/y/sa/db',
      node: 'node-2',
    });
    expect(await cli(['flush', '--all'])).toMatchObject({ code: 0, out: 'removed 1 entry\n' });
  });

  it('follows new events after the existing ones', async () => {
    const ctl = new AbortController();
    let sofar = '';
    const p = cli(['events', '--follow', '--limit', '1', '-o', 'json'], ctl.signal, (t) => (sofar += t));
    // Settle points, not sleeps: the existing event is out (the follow's cursor is set), then the
    // writer's two records (committed on its next flush) are out too.
    await until('the existing event followed', () => sofar.split('\n').length > 1);
    writer.record({ type: 'reauth', outcome: 'info', localId: 'spiffe://a.test/ns/x/sa/web' });
    writer.record({ type: 'peer-unreachable', outcome: 'failure', reason: 'timeout', node: 'node-4' });
    await until(
      'the new events followed',
      () => sofar.split('\n').length > 3,
      15_000,
      () => sofar,
    );
    ctl.abort();
    const r = await p;
    expect(r.code).toBe(0);
    expect(
      r.out
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { type: string }).type),
    ).toEqual(['entry-written', 'reauth', 'peer-unreachable']);
  });

  it('verifies the audit chain through the daemon and offline, and reports tampering', async () => {
    writer.flush();
    const ok = await cli(['audit', 'verify']);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^audit chain OK: \d+ events verified/);
    const db = new Database(store.path);
    db.prepare(`UPDATE events SET reason = 'ok' WHERE seq = 2`).run();
    db.close();
    const bad = await cli(['audit', 'verify', '--db', store.path]);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/BROKEN at seq 2 \(edited\)/);
    const j = await cli(['audit', 'verify', '--db', store.path, '-o', 'json']);
    expect(JSON.parse(j.out)).toMatchObject({ ok: false, problem: { seq: 2, kind: 'edited' } });
    const missing = await cli(['audit', 'verify', '--db', join(dir, 'none.db')]);
    expect(missing).toMatchObject({ code: 1, err: expect.stringMatching(/no such file/) });
  });

  it('says an empty audit trail is empty, not a seq range of dashes', async () => {
    const empty = AuditStore.open({ path: join(dir, 'empty.db') });
    empty.close();
    const r = await cli(['audit', 'verify', '--db', join(dir, 'empty.db')]);
    expect(r).toEqual({
      code: 0,
      out: `audit trail is empty: no events to verify in ${join(dir, 'empty.db')}\n`,
      err: '',
    });
    const j = await cli(['audit', 'verify', '--db', join(dir, 'empty.db'), '-o', 'json']);
    expect(JSON.parse(j.out)).toMatchObject({ ok: true, checked: 0, firstSeq: null, lastSeq: null });
  });

  it('says which socket it tried, and why it failed, when the daemon is not running', async () => {
    const r = await cli(['--socket', join(dir, 'down.sock'), '--timeout', '1', 'status']);
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      `meshauth: cannot reach meshauthd on unix socket ${join(dir, 'down.sock')}: no such socket (connect ENOENT)\n` +
        '  is meshauthd running? (use --socket or MESHAUTH_SOCKET to point elsewhere)\n',
    );
    // a file that is not a socket is named as such (connect(2) calls it "connection refused")
    writeFileSync(join(dir, 'plain-file'), '');
    const f = await cli(['--socket', join(dir, 'plain-file'), '--timeout', '1', 'status']);
    expect(f.code).toBe(1);
    expect(f.err).toBe(
      `meshauth: --socket ${join(dir, 'plain-file')}: not a Unix socket (a regular file); meshauthd's api.socket is a socket file\n`,
    );
  });

  it('says when the daemon accepted the connection but never answered', async () => {
    const silent = createServer(() => undefined);
    const path = join(dir, 'silent.sock');
    await new Promise<void>((resolve) => silent.listen(path, resolve));
    try {
      const r = await cli(['--socket', path, '--timeout', '0.5', 'status']);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(
        /^meshauth: cannot reach meshauthd on unix socket .*silent\.sock: no answer within (?:0\.[5-9]|[1-9][\d.]*) s \(deadline exceeded\)\n {2}is meshauthd running\?/,
      );
    } finally {
      silent.close();
    }
  });

  it('names the relay and --relay, not the socket, when the relay is unreachable; likewise --address', async () => {
    const ca = await DevCa.create('cli.test');
    const me = await ca.issue('spiffe://cli.test/ops/admin');
    writeFileSync(join(dir, 'me.crt'), me.chainPem);
    writeFileSync(join(dir, 'me.key'), me.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.pem'), ca.caPem);
    const tls = [
      '--tls-cert',
      join(dir, 'me.crt'),
      '--tls-key',
      join(dir, 'me.key'),
      '--tls-bundle',
      join(dir, 'ca.pem'),
    ];
    // port 1 on loopback: nothing listens there
    const relay = await cli(['--relay', '127.0.0.1:1', ...tls, '--timeout', '1', 'events']);
    expect(relay.code).toBe(1);
    expect(relay.err).toContain(
      'cannot reach meshauth-relay on address 127.0.0.1:1: connection refused (connect ECONNREFUSED)\n' +
        '  is meshauth-relay running',
    );
    expect(relay.err).not.toMatch(/Resolution note/);
    expect(relay.err).toContain('--relay host:port');
    expect(relay.err).not.toMatch(/--socket|MESHAUTH_SOCKET/);
    // audit verify through the relay would have no file to read: said at once, not "the daemon"
    const verify = await cli(['--relay', '127.0.0.1:1', ...tls, 'audit', 'verify']);
    expect(verify.code).toBe(2);
    expect(verify.err).toMatch(/audit verify reads one node's audit database.*--relay has no database/);
    const node = await cli(['--address', '127.0.0.1:1', ...tls, '--timeout', '1', 'status']);
    expect(node.err).toContain('cannot reach meshauthd on address 127.0.0.1:1: connection refused');
    expect(node.err).toContain('--address host:port');
    expect(node.err).not.toMatch(/--socket|MESHAUTH_SOCKET/);
  });

  it('has help with examples', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Examples:/);
    expect(r.out).toMatch(/events/);
    const e = await cli(['events', '--help']);
    expect(e.out).toMatch(/--follow/);
    expect(e.out).toMatch(/meshauth events --outcome failure --since 1h/);
  });
});

describe('meshauth binary (spawned, built dist)', () => {
  beforeAll(() => buildDist(), 180_000);

  it('runs as a user runs it: bin/meshauth.js status, events -o json, bad socket', async () => {
    const bin = join(ROOT, 'bin', 'meshauth.js');
    const env = { ...process.env, MESHAUTH_SOCKET: sock };
    // spawnSync would block this process's event loop, which serves the API: spawn asynchronously
    const exec = (args: string[], e = env) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const c = spawn(process.execPath, [bin, ...args], { env: e });
        let stdout = '';
        let stderr = '';
        c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        c.on('exit', (status) => resolve({ status, stdout, stderr }));
      });
    const st = await exec(['status', '-o', 'json']);
    expect(st.stderr).toBe('');
    expect(st.status).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({ node: 'node-1' });
    const ev = await exec(['events', '-o', 'json', '--type', 'handshake-failed']);
    expect(ev.status).toBe(0);
    expect(JSON.parse(ev.stdout.trim().split('\n')[0]!)).toMatchObject({ type: 'handshake-failed' });
    const down = await exec(['status'], { ...process.env, MESHAUTH_SOCKET: join(dir, 'gone.sock') });
    expect(down.status).toBe(1);
    expect(down.stderr).toMatch(/cannot reach meshauthd on unix socket .*gone\.sock/);
    const direct = spawnSync(process.execPath, [CLI_JS, '--version']);
    expect(direct.stdout.toString().trim()).toBe('0.1.0');
  });
});
