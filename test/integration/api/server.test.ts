import { statSync, writeFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, startApiServer, type ApiServer, type EventMsg } from '../../../src/api/index.js';
import { AuditStore, AuditWriter, type AuditEventInput } from '../../../src/audit/index.js';
import { FakeDaemon } from './fake-daemon.js';

let dir: string;
let store: AuditStore;
let writer: AuditWriter;
let server: ApiServer;
let client: ApiClient;
const daemon = new FakeDaemon();
const sock = () => join(dir, 'run', 'api.sock');

const ev = (i: number): AuditEventInput => ({
  type: i % 3 === 0 ? 'handshake-failed' : 'handshake-succeeded',
  outcome: i % 3 === 0 ? 'failure' : 'success',
  reason: i % 3 === 0 ? 'svid-expired' : undefined,
  localId: `spiffe://a.test/ns/x/sa/w${i % 2}`,
  remoteId: 'spiffe://b.test/ns/y/sa/db',
  node: `node-${i % 4}`,
  details: { i },
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-api-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  writer = new AuditWriter(store, { flushIntervalMs: 5 });
  store.append(Array.from({ length: 300 }, (_, i) => ev(i + 1)));
  server = await startApiServer({ store, daemon, queue: writer, unix: { path: sock() }, followPollMs: 50 });
  client = new ApiClient({ socket: sock() });
});

afterAll(async () => {
  client?.close();
  await server?.close();
  await writer?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function collect(it: AsyncIterable<EventMsg>, n: number, ctl: AbortController): Promise<EventMsg[]> {
  const out: EventMsg[] = [];
  for await (const e of it) {
    out.push(e);
    if (out.length >= n) {
      ctl.abort();
      break;
    }
  }
  return out;
}

describe('API server on a Unix socket', () => {
  it('creates the socket with mode 0600 and removes a stale one', async () => {
    expect(statSync(sock()).mode & 0o777).toBe(0o600);
    // a stale socket (nobody listening) is replaced; a live one is refused; a regular file is refused
    const stalePath = join(dir, 'stale.sock');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(stalePath, r));
    await expect(startApiServer({ store, daemon, unix: { path: stalePath } })).rejects.toThrow(
      /another process/,
    );
    await new Promise<void>((r) => srv.close(() => r()));
    // a process killed while listening leaves its socket file behind
    const child = spawn(
      process.execPath,
      ['-e', "require('net').createServer().listen(process.argv[1], () => console.log('up'))", stalePath],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise((r) => child.stdout.once('data', r));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(existsSync(stalePath)).toBe(true);
    const s2 = await startApiServer({ store, daemon, unix: { path: stalePath, mode: 0o660 } });
    expect(statSync(stalePath).mode & 0o777).toBe(0o660);
    const c2 = new ApiClient({ socket: stalePath });
    expect(await c2.healthCheck()).toBe('SERVING');
    c2.close();
    await s2.close();
    expect(existsSync(stalePath)).toBe(false);
    const filePath = join(dir, 'file.sock');
    writeFileSync(filePath, 'x');
    await expect(startApiServer({ store, daemon, unix: { path: filePath } })).rejects.toThrow(/not a socket/);
    await expect(
      startApiServer({ store, daemon, unix: { path: join(dir, 'x.sock'), mode: 0o666 } }),
    ).rejects.toThrow(/anyone/);
  });

  it('answers health checks for the server and the Audit service', async () => {
    expect(await client.healthCheck()).toBe('SERVING');
    expect(await client.healthCheck('meshauth.v1.Audit')).toBe('SERVING');
    await expect(client.healthCheck('nope')).rejects.toMatchObject({ grpcCode: grpc.status.NOT_FOUND });
  });

  it('serves reflection', async () => {
    const { loadSync } = await import('@grpc/proto-loader');
    const def = loadSync('grpc/reflection/v1/reflection.proto', {
      includeDirs: [join(import.meta.dirname, '../../../node_modules/@grpc/reflection/build/proto')],
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    const rc = new pkg.grpc.reflection.v1.ServerReflection(
      `unix://${sock()}`,
      grpc.credentials.createInsecure(),
    );
    const call = (
      rc as unknown as { serverReflectionInfo(): grpc.ClientDuplexStream<object, Record<string, unknown>> }
    ).serverReflectionInfo();
    const got = new Promise<Record<string, unknown>>((resolve, reject) => {
      call.on('data', resolve);
      call.on('error', reject);
    });
    call.write({ listServices: '' });
    const res = await got;
    call.end();
    rc.close();
    const names = ((res['listServicesResponse'] as { service: Array<{ name: string }> }).service ?? []).map(
      (s) => s.name,
    );
    expect(names).toEqual(expect.arrayContaining(['meshauth.v1.Audit', 'grpc.health.v1.Health']));
  });

  it('queries with filters and pages through everything', async () => {
    const failed = await client.queryEvents({ filter: { outcome: 'failure' }, pageSize: 1000 });
    expect(failed.events.length).toBe(100);
    expect(failed.nextPageToken).toBe('');
    expect(failed.events.every((e) => e.reason === 'svid-expired' && e.type === 'handshake-failed')).toBe(
      true,
    );
    const byId = await client.queryEvents({
      filter: { identity: 'spiffe://a.test/ns/x/sa/w1', node: 'node-1' },
      pageSize: 1000,
    });
    expect(byId.events.length).toBe(75);
    expect(JSON.parse(byId.events[0]!.detailsJson)).toEqual({ i: 1 });
    const glob = await client.queryEvents({ filter: { identity: 'spiffe://a.test/*' }, pageSize: 1000 });
    expect(glob.events.length).toBeGreaterThanOrEqual(300);
    const seqs: number[] = [];
    let token = '';
    for (;;) {
      const p = await client.queryEvents({ pageSize: 70, pageToken: token });
      seqs.push(...p.events.map((e) => e.seq));
      if (!p.nextPageToken) break;
      token = p.nextPageToken;
    }
    expect(seqs.slice(0, 300)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    const newest = await client.queryEvents({ pageSize: 2, newestFirst: true });
    expect(newest.events[0]!.seq).toBeGreaterThan(newest.events[1]!.seq);
  });

  it('rejects bad requests with INVALID_ARGUMENT and a useful message', async () => {
    await expect(client.queryEvents({ filter: { outcome: 'maybe' } })).rejects.toMatchObject({
      grpcCode: grpc.status.INVALID_ARGUMENT,
      message: expect.stringMatching(/outcome must be one of/),
    });
    await expect(client.queryEvents({ filter: { identity: 'web' } })).rejects.toMatchObject({
      grpcCode: grpc.status.INVALID_ARGUMENT,
      message: expect.stringMatching(/spiffe:\/\//),
    });
    await expect(client.queryEvents({ filter: { types: ['bogus'] } })).rejects.toMatchObject({
      message: expect.stringMatching(/unknown type\(s\) bogus/),
    });
    await expect(client.queryEvents({ filter: { sinceMs: 10, untilMs: 5 } })).rejects.toMatchObject({
      grpcCode: grpc.status.INVALID_ARGUMENT,
    });
    await expect(client.queryEvents({ pageSize: 20_000 })).rejects.toMatchObject({
      grpcCode: grpc.status.INVALID_ARGUMENT,
    });
    await expect(client.queryEvents({ pageToken: 'garbage' })).rejects.toMatchObject({
      message: expect.stringMatching(/page_token/),
    });
    await expect(client.flush({})).rejects.toMatchObject({ grpcCode: grpc.status.INVALID_ARGUMENT });
    await expect(client.flush({ all: true, localId: 'spiffe://a/b' })).rejects.toMatchObject({
      message: expect.stringMatching(/not both/),
    });
  });

  it('lists entries, reports status (with audit numbers) and flushes', async () => {
    const entries = await client.listEntries();
    expect(entries.map((e) => e.remoteId)).toEqual([
      'spiffe://b.test/ns/y/sa/db',
      'spiffe://a.test/ns/x/sa/cache',
    ]);
    expect(entries[0]).toMatchObject({
      remoteNode: 'node-2',
      expiresAtMs: 1_900_000_000_000,
      localIdentity: 1,
    });
    const st = await client.status();
    expect(st).toMatchObject({
      node: 'node-1',
      datapathAttached: true,
      datapathMode: 'tc',
      identitySource: 'dev-ca',
      counters: { pass: 10, drop_auth_required: 3 },
      audit: { rows: expect.any(Number), path: store.path },
    });
    expect(st.audit!.lastSeq).toBe(store.lastSeq());
    expect(
      await client.flush({ localId: 'spiffe://a.test/ns/x/sa/web', remoteId: 'spiffe://b.test/ns/y/sa/db' }),
    ).toBe(1);
    expect(daemon.flushes.at(-1)).toEqual({
      localId: 'spiffe://a.test/ns/x/sa/web',
      remoteId: 'spiffe://b.test/ns/y/sa/db',
    });
    expect(await client.flush({ all: true })).toBe(1);
    expect(await client.listEntries()).toEqual([]);
  });

  it('follows live events written by the writer while querying', async () => {
    const ctl = new AbortController();
    const got = collect(client.followEvents({ filter: { node: 'node-3' } }, ctl.signal), 50, ctl);
    await new Promise((r) => setTimeout(r, 100));
    const start = store.lastSeq();
    for (let i = 0; i < 400; i++) writer.record({ ...ev(i), node: `node-${i % 4}`, details: { live: i } });
    // queries in parallel with writes
    const q = await client.queryEvents({ filter: { node: 'node-3' }, pageSize: 5 });
    expect(q.events.length).toBe(5);
    const events = await got;
    expect(events.length).toBe(50);
    expect(events.every((e) => e.node === 'node-3' && e.seq > start)).toBe(true);
    const seqs = events.map((e) => e.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
  });

  it('follow with a cursor after a reconnect misses nothing', async () => {
    const base = store.lastSeq();
    const seen: number[] = [];
    // first connection: read 100 events, then drop
    const ctl1 = new AbortController();
    const first = collect(client.followEvents({ afterSeq: base }, ctl1.signal), 100, ctl1);
    const producer = (async () => {
      for (let round = 0; round < 30; round++) {
        for (let i = 0; i < 20; i++)
          writer.record({ type: 'signal', outcome: 'info', details: { round, i } });
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    seen.push(...(await first).map((e) => e.seq));
    // events keep arriving while disconnected
    await new Promise((r) => setTimeout(r, 60));
    const ctl2 = new AbortController();
    const second = collect(client.followEvents({ afterSeq: seen.at(-1)! }, ctl2.signal), 500, ctl2);
    await producer;
    seen.push(...(await second).map((e) => e.seq));
    expect(seen).toEqual(Array.from({ length: 600 }, (_, i) => base + 1 + i));
  });

  it('refuses a follow cursor past the head (another trail) instead of skipping up to it', async () => {
    const head = store.lastSeq();
    const ctl = new AbortController();
    await expect(
      collect(client.followEvents({ afterSeq: head + 1000 }, ctl.signal), 1, ctl),
    ).rejects.toMatchObject({ grpcCode: grpc.status.OUT_OF_RANGE });
    // the head itself is a valid cursor: the next event is delivered
    const ctl2 = new AbortController();
    const got = collect(client.followEvents({ afterSeq: head }, ctl2.signal), 1, ctl2);
    await new Promise((r) => setTimeout(r, 100));
    writer.record({ type: 'reauth', outcome: 'info' });
    expect((await got)[0]!.seq).toBe(head + 1);
  });

  it('a separate client process view: follow without cursor starts at the head', async () => {
    const ctl = new AbortController();
    const head = store.lastSeq();
    const got = collect(client.followEvents({}, ctl.signal), 1, ctl);
    await new Promise((r) => setTimeout(r, 100));
    writer.record({ type: 'reauth', outcome: 'info' });
    const [e] = await got;
    expect(e!.seq).toBe(head + 1);
    expect(e!.type).toBe('reauth');
  });

  it('reports a missing daemon clearly', async () => {
    const c = new ApiClient({ socket: join(dir, 'nobody.sock'), timeoutMs: 500 });
    await expect(c.status()).rejects.toMatchObject({ grpcCode: grpc.status.UNAVAILABLE });
    c.close();
  });
});
