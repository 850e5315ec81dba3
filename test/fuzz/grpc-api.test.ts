/**
 * Fuzz target: gRPC API requests. The real API server of src/api (with a real SQLite audit store)
 * on a Unix socket gets raw request bytes for every method: random bytes, mutated encodings and
 * structured requests with odd field values (huge and negative page sizes, int64 extremes, garbage
 * page tokens, invalid SPIFFE IDs and glob patterns, unknown fields and wire types).
 * Invariants: every call ends, with OK, INVALID_ARGUMENT (NOT_FOUND for an unknown health service),
 * or the INTERNAL status of grpc-js for a request that is not protobuf; no handler fails with INTERNAL or UNKNOWN on its own; the daemon
 * is asked to flush entries only for a well-formed FlushEntries request; the server keeps serving.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, startApiServer, type ApiServer } from '../../src/api/index.js';
import { AuditStore, AuditWriter } from '../../src/audit/index.js';
import { parseSpiffeId } from '../../src/spiffe/index.js';
import { FakeDaemon } from '../integration/api/fake-daemon.js';
import { corpus, fc, fuzzAsync, mutatedBytes, timeoutFor } from './harness.js';

const TARGET = 'grpc-api';
const CI_SECONDS = 4;
const METHODS = [
  { path: '/meshauth.v1.Audit/QueryEvents', stream: true },
  { path: '/meshauth.v1.Audit/FollowEvents', stream: true },
  { path: '/meshauth.v1.Audit/ListEntries', stream: false },
  { path: '/meshauth.v1.Audit/GetStatus', stream: false },
  { path: '/meshauth.v1.Audit/FlushEntries', stream: false },
  { path: '/grpc.health.v1.Health/Check', stream: false },
] as const;

const str = fc.oneof(
  fc.constantFrom(
    '',
    'spiffe://a.test/ns/x/sa/web',
    'spiffe://b.test/ns/y/sa/db',
    'spiffe://a.test/ns/*',
    '[',
    '**',
    'spiffe://a.test',
    'node-1',
    'success',
    'x'.repeat(5000),
  ),
  fc.string({ maxLength: 16 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
);
const int64 = fc.oneof(fc.constantFrom(0, -1, 1, 2 ** 53, -(2 ** 53), 1_900_000_000_000), fc.integer());

function filterBytes(f: {
  identity?: string;
  node?: string;
  outcome?: string;
  reason?: string;
  types: string[];
  since?: number;
  until?: number;
}): Uint8Array {
  const w = protobuf.Writer.create();
  if (f.identity !== undefined) w.uint32((1 << 3) | 2).string(f.identity);
  if (f.node !== undefined) w.uint32((2 << 3) | 2).string(f.node);
  if (f.outcome !== undefined) w.uint32((3 << 3) | 2).string(f.outcome);
  if (f.reason !== undefined) w.uint32((4 << 3) | 2).string(f.reason);
  for (const t of f.types) w.uint32((5 << 3) | 2).string(t);
  if (f.since !== undefined) w.uint32(6 << 3).int64(f.since);
  if (f.until !== undefined) w.uint32(7 << 3).int64(f.until);
  return w.finish();
}
const filter = fc
  .record(
    {
      identity: str,
      node: str,
      outcome: fc.oneof(fc.constantFrom('success', 'failure', 'info'), str),
      reason: str,
      types: fc.array(str, { maxLength: 3 }),
      since: int64,
      until: int64,
    },
    { requiredKeys: ['types'] },
  )
  .map(filterBytes);

const structured = fc.oneof(
  fc
    .record({
      filter: fc.option(filter),
      pageSize: fc.oneof(fc.constantFrom(0, 1, 10_000, 10_001, 0xffffffff), fc.nat()),
      token: fc.oneof(str, fc.base64String()),
      newest: fc.boolean(),
    })
    .map(({ filter: f, pageSize, token, newest }) => {
      const w = protobuf.Writer.create();
      if (f) w.uint32((1 << 3) | 2).bytes(f);
      w.uint32(2 << 3).uint32(pageSize);
      w.uint32((3 << 3) | 2).string(token);
      w.uint32(4 << 3).bool(newest);
      return { method: 0, body: Buffer.from(w.finish()) };
    }),
  fc
    .record({
      filter: fc.option(filter),
      after: fc.option(fc.oneof(fc.constantFrom(0, 1, 2 ** 53), fc.nat())),
    })
    .map(({ filter: f, after }) => {
      const w = protobuf.Writer.create();
      if (f) w.uint32((1 << 3) | 2).bytes(f);
      if (after !== null) w.uint32(2 << 3).uint64(after);
      return { method: 1, body: Buffer.from(w.finish()) };
    }),
  fc
    .record({ all: fc.boolean(), local: fc.option(str), remote: fc.option(str), node: fc.option(str) })
    .map(({ all, local, remote, node }) => {
      const w = protobuf.Writer.create();
      w.uint32(1 << 3).bool(all);
      if (local !== null) w.uint32((2 << 3) | 2).string(local);
      if (remote !== null) w.uint32((3 << 3) | 2).string(remote);
      if (node !== null) w.uint32((4 << 3) | 2).string(node);
      return { method: 4, body: Buffer.from(w.finish()) };
    }),
);

describe('fuzz: gRPC API requests', () => {
  let dir: string;
  let store: AuditStore;
  let writer: AuditWriter;
  let server: ApiServer;
  let client: grpc.Client;
  const daemon = new FakeDaemon();
  const sock = (): string => join(dir, 'api.sock');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-fuzz-api-'));
    store = AuditStore.open({ path: join(dir, 'audit.db') });
    writer = new AuditWriter(store, { flushIntervalMs: 5 });
    store.append(
      Array.from({ length: 50 }, (_, i) => ({
        type: 'handshake-succeeded',
        outcome: 'success' as const,
        localId: 'spiffe://a.test/ns/x/sa/web',
        remoteId: 'spiffe://b.test/ns/y/sa/db',
        node: `node-${i % 3}`,
        details: { i },
      })),
    );
    server = await startApiServer({ store, daemon, queue: writer, unix: { path: sock() }, followPollMs: 20 });
    client = new grpc.Client(`unix://${sock()}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
    await writer?.close();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** One call with raw request bytes; resolves with its final status. */
  function call(method: number, body: Buffer): Promise<grpc.StatusObject> {
    const m = METHODS[method % METHODS.length]!;
    const ser = (b: Buffer): Buffer => b;
    const de = (b: Buffer): Buffer => b;
    const deadline = Date.now() + 3000;
    return new Promise((resolve) => {
      if (m.stream) {
        const s = client.makeServerStreamRequest(m.path, ser, de, body, { deadline });
        s.on('data', () => {});
        s.on('error', () => {});
        s.on('status', resolve);
        // FollowEvents never ends on its own: cancelling it is the client's way out.
        if (m.path.endsWith('FollowEvents')) setTimeout(() => s.cancel(), 30);
      } else {
        const c = client.makeUnaryRequest(m.path, ser, de, body, { deadline }, () => {});
        c.on('status', resolve);
      }
    });
  }

  it('regression: FlushEntries for a malformed SPIFFE ID is INVALID_ARGUMENT, not passed to the daemon', async () => {
    // Found by this target: only the "spiffe://" prefix was checked, so a NUL in the trust domain
    // reached the daemon's flush (which removed nothing and reported success).
    const body = corpus(TARGET).find((f) => f.name === 'finding-flush-nul-trust-domain')!.data;
    const before = daemon.flushes.length;
    const st = await call(4, body);
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.details).toMatch(/local_id must be a SPIFFE ID, got "spiffe:\/\/\\u0000\.test/);
    expect(daemon.flushes.length).toBe(before);
  });

  it(
    'malformed and out-of-range requests: a defined status, no flush the request did not ask for',
    async () => {
      const seedBodies = corpus(TARGET).map((f) => f.data);
      const input = fc.oneof(
        structured,
        fc.record({ method: fc.nat(), body: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)) }),
        fc.record({ method: fc.nat(), body: mutatedBytes(seedBodies, 4) }),
      );
      await fuzzAsync(TARGET, CI_SECONDS, input, async ({ method, body }) => {
        const flushesBefore = daemon.flushes.length;
        const st = await call(method, body);
        const ctx = `${METHODS[method % METHODS.length]!.path} ${body.toString('hex')}: ${st.code} ${st.details}`;
        const ok = [grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.CANCELLED];
        // gRPC health protocol: a service name the server does not know is NOT_FOUND.
        if (METHODS[method % METHODS.length]!.path.endsWith('Health/Check')) ok.push(grpc.status.NOT_FOUND);
        // a resume cursor past the trail's head (a cursor of another trail) is OUT_OF_RANGE
        if (METHODS[method % METHODS.length]!.path.endsWith('FollowEvents'))
          ok.push(grpc.status.OUT_OF_RANGE);
        if (!ok.includes(st.code)) {
          expect(st.code, ctx).toBe(grpc.status.INTERNAL);
          expect(st.details, ctx).toMatch(/deserializ|parse/i);
        }
        for (const req of daemon.flushes.slice(flushesBefore)) {
          if ('all' in req) expect(req.all, ctx).toBe(true);
          else {
            expect(() => parseSpiffeId(req.localId), ctx).not.toThrow();
            expect(() => parseSpiffeId(req.remoteId), ctx).not.toThrow();
          }
        }
      });
      const health = new ApiClient({ socket: sock() });
      expect(await health.healthCheck()).toBe('SERVING');
      health.close();
    },
    timeoutFor(CI_SECONDS),
  );
});
