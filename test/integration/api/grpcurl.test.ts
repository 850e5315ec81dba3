/**
 * The API as a protoc-based client sees it: grpcurl (built from the Go module proxy by
 * scripts/build-grpcurl.sh) learns every type through server reflection alone (no .proto files)
 * and calls every method of meshauth.v1.Audit and grpc.health.v1.Health on the Unix socket.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../../../src/api/index.js';
import { AuditStore, type AuditEventInput } from '../../../src/audit/index.js';
import { FakeDaemon } from './fake-daemon.js';

const ROOT = join(import.meta.dirname, '../../..');
const GRPCURL =
  process.env['MESHAUTH_GRPCURL'] ??
  execFileSync('bash', [join(ROOT, 'scripts/build-grpcurl.sh'), '--print-bin'], { encoding: 'utf8' }).trim();

let dir: string;
let store: AuditStore;
let server: ApiServer;
const daemon = new FakeDaemon();
const sock = () => join(dir, 'api.sock');

const ev = (i: number): AuditEventInput => ({
  type: i % 2 === 0 ? 'handshake-failed' : 'handshake-succeeded',
  outcome: i % 2 === 0 ? 'failure' : 'success',
  ...(i % 2 === 0 ? { reason: 'svid-expired' } : {}),
  localId: 'spiffe://a.test/ns/x/sa/web',
  remoteId: 'spiffe://b.test/ns/y/sa/db',
  node: `node-${i % 3}`,
  details: { i },
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function grpcurl(args: string[], data?: unknown): Promise<Run> {
  const argv = [
    '-plaintext',
    '-unix',
    ...(data === undefined ? [] : ['-d', JSON.stringify(data)]),
    sock(),
    ...args,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(GRPCURL, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function ok(args: string[], data?: unknown): Promise<string> {
  const r = await grpcurl(args, data);
  expect(r.stderr, `grpcurl ${args.join(' ')}`).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
}

/** grpcurl prints each message as an indented JSON object; split a stream of them. */
function messages(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split(/\n(?=\{)/)
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => JSON.parse(s) as Record<string, unknown>);
}

/** A server-streaming call left running: wait for the first n messages, then stop it. */
function streaming(args: string[], data: unknown) {
  const child = spawn(GRPCURL, ['-plaintext', '-unix', '-d', JSON.stringify(data), sock(), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let exited: number | null | undefined;
  const waiters = new Set<() => void>();
  child.stdout.on('data', (b: Buffer) => {
    stdout += b.toString('utf8');
    for (const w of waiters) w();
  });
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
  child.on('close', (code) => {
    exited = code;
    for (const w of waiters) w();
  });
  // complete messages only: each ends with a closing brace at the start of a line
  const complete = () => {
    const end = stdout.lastIndexOf('\n}');
    return end < 0 ? [] : messages(stdout.slice(0, end + 2));
  };
  return {
    seen(n: number): Promise<Array<Record<string, unknown>>> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const got = complete();
          if (got.length >= n) {
            waiters.delete(check);
            resolve(got);
          } else if (exited !== undefined) {
            waiters.delete(check);
            reject(
              new Error(
                `grpcurl ${args.join(' ')} exited (${exited}) after ${got.length} messages: ${stderr}`,
              ),
            );
          }
        };
        waiters.add(check);
        check();
      });
    },
    stderr: () => stderr,
    stop: () => child.kill('SIGTERM'),
  };
}

beforeAll(async () => {
  if (!existsSync(GRPCURL)) throw new Error(`${GRPCURL} is missing: run bash scripts/build-grpcurl.sh`);
  dir = mkdtempSync(join(tmpdir(), 'meshauth-grpcurl-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  store.append(Array.from({ length: 12 }, (_, i) => ev(i + 1)));
  server = await startApiServer({ store, daemon, unix: { path: sock() }, followPollMs: 50 });
});

afterAll(async () => {
  await server?.close();
  store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('grpcurl through server reflection', () => {
  it('lists the services', async () => {
    const services = (await ok(['list'])).trim().split('\n').sort();
    expect(services).toEqual(expect.arrayContaining(['grpc.health.v1.Health', 'meshauth.v1.Audit']));
    const methods = (await ok(['list', 'meshauth.v1.Audit'])).trim().split('\n').sort();
    expect(methods).toEqual([
      'meshauth.v1.Audit.FlushEntries',
      'meshauth.v1.Audit.FollowEvents',
      'meshauth.v1.Audit.GetStatus',
      'meshauth.v1.Audit.ListEntries',
      'meshauth.v1.Audit.QueryEvents',
    ]);
  });

  it('describes the service and the messages with maps, oneofs and proto3 optional as written', async () => {
    const svc = await ok(['describe', 'meshauth.v1.Audit']);
    expect(svc).toContain('meshauth.v1.Audit is a service:');
    expect(svc).toContain(
      'rpc QueryEvents ( .meshauth.v1.QueryEventsRequest ) returns ( stream .meshauth.v1.QueryEventsResponse );',
    );
    // comments come from the .proto source
    expect(svc).toContain('Daemon status: datapath, identity source, counters, versions, audit trail.');
    const status = await ok(['describe', 'meshauth.v1.Status']);
    expect(status).toContain('map<string, uint64> counters = 11;');
    expect(status).toContain('map<string, string> versions = 14;');
    // the implicit entry message is named as protoc names it (the reason reflection serves protoc output)
    expect(await ok(['describe', 'meshauth.v1.Status.CountersEntry'])).toContain(
      'meshauth.v1.Status.CountersEntry is the entry type for a map field',
    );
    expect(await ok(['describe', 'meshauth.v1.FollowEventsRequest'])).toContain(
      'optional uint64 after_seq = 2;',
    );
    expect(await ok(['describe', 'meshauth.v1.QueryEventsResponse'])).toMatch(/oneof item \{/);
    expect(await ok(['describe', 'grpc.health.v1.Health'])).toContain('rpc Check');
  });

  it('GetStatus', async () => {
    const [st] = messages(await ok(['meshauth.v1.Audit/GetStatus'], {}));
    expect(st).toMatchObject({
      node: 'node-1',
      datapathAttached: true,
      datapathMode: 'tc',
      identitySource: 'dev-ca',
      // uint64 as JSON strings (proto3 JSON mapping)
      counters: { pass: '10', drop_auth_required: '3' },
      audit: { lastSeq: '12', rows: '12', path: store.path },
    });
  });

  it('QueryEvents: a filtered page, then the cursor', async () => {
    const out = messages(
      await ok(['meshauth.v1.Audit/QueryEvents'], { filter: { outcome: 'failure' }, page_size: 4 }),
    );
    expect(out).toHaveLength(5);
    const events = out.slice(0, 4).map((m) => m['event'] as Record<string, string>);
    expect(events.map((e) => e['seq'])).toEqual(['2', '4', '6', '8']);
    expect(events.every((e) => e['reason'] === 'svid-expired')).toBe(true);
    expect(JSON.parse(events[0]!['detailsJson']!)).toEqual({ i: 2 });
    const next = (out[4]!['pageEnd'] as { nextPageToken: string }).nextPageToken;
    expect(next).not.toBe('');
    const rest = messages(
      await ok(['meshauth.v1.Audit/QueryEvents'], { filter: { outcome: 'failure' }, pageToken: next }),
    );
    expect(rest.slice(0, -1).map((m) => (m['event'] as { seq: string }).seq)).toEqual(['10', '12']);
    expect(rest.at(-1)).toEqual({ pageEnd: {} });
  });

  it('QueryEvents: a bad filter is INVALID_ARGUMENT with the reason', async () => {
    const r = await grpcurl(['meshauth.v1.Audit/QueryEvents'], { filter: { outcome: 'maybe' } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Code: InvalidArgument');
    expect(r.stderr).toContain('outcome must be one of');
  });

  it('FollowEvents: replays after after_seq, then streams what is written', async () => {
    const follow = streaming(['meshauth.v1.Audit/FollowEvents'], { after_seq: 10 });
    try {
      const replayed = await follow.seen(2);
      expect(replayed.map((m) => m['seq'])).toEqual(['11', '12']);
      store.append([{ type: 'reauth', outcome: 'info', node: 'node-9' }]);
      const live = await follow.seen(3);
      expect(live[2]).toMatchObject({ seq: '13', type: 'reauth', outcome: 'info', node: 'node-9' });
    } finally {
      follow.stop();
    }
    expect(follow.stderr()).toBe('');
  });

  it('ListEntries and FlushEntries', async () => {
    const [list] = messages(await ok(['meshauth.v1.Audit/ListEntries'], {}));
    const entries = list!['entries'] as Array<Record<string, unknown>>;
    expect(entries.map((e) => e['remoteId'])).toEqual([
      'spiffe://b.test/ns/y/sa/db',
      'spiffe://a.test/ns/x/sa/cache',
    ]);
    expect(entries[0]).toMatchObject({
      remoteNode: 'node-2',
      localIdentity: 1,
      expiresAtMs: '1900000000000',
    });
    const [flushed] = messages(
      await ok(['meshauth.v1.Audit/FlushEntries'], {
        local_id: 'spiffe://a.test/ns/x/sa/web',
        remote_id: 'spiffe://b.test/ns/y/sa/db',
      }),
    );
    expect(flushed).toEqual({ removed: 1 });
    expect(daemon.flushes.at(-1)).toEqual({
      localId: 'spiffe://a.test/ns/x/sa/web',
      remoteId: 'spiffe://b.test/ns/y/sa/db',
    });
    const bad = await grpcurl(['meshauth.v1.Audit/FlushEntries'], {});
    expect(bad.stderr).toContain('Code: InvalidArgument');
  });

  it('grpc.health.v1.Health/Watch', async () => {
    const watch = streaming(['grpc.health.v1.Health/Watch'], { service: 'meshauth.v1.Audit' });
    try {
      expect(await watch.seen(1)).toEqual([{ status: 'SERVING' }]);
      server.health.set('meshauth.v1.Audit', 'NOT_SERVING');
      expect((await watch.seen(2))[1]).toEqual({ status: 'NOT_SERVING' });
    } finally {
      server.health.set('meshauth.v1.Audit', 'SERVING');
      watch.stop();
    }
  });

  it('grpc.health.v1.Health/Check', async () => {
    expect(messages(await ok(['grpc.health.v1.Health/Check'], {}))).toEqual([{ status: 'SERVING' }]);
    expect(messages(await ok(['grpc.health.v1.Health/Check'], { service: 'meshauth.v1.Audit' }))).toEqual([
      { status: 'SERVING' },
    ]);
    const missing = await grpcurl(['grpc.health.v1.Health/Check'], { service: 'nope' });
    expect(missing.stderr).toContain('Code: NotFound');
  });
});
