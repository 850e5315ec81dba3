/**
 * Fuzz target: auth-required records of the ma_signals ring buffer (struct ma_signal, 160 bytes),
 * decoded by src/datapath/wire.ts and consumed by the AuthManager. Records are random, mutated
 * seeds, or built from small pools of known and unknown identities, nodes, auth types and flags.
 * Invariants: decoding a short record is a DatapathInputError, a full one decodes to in-range
 * fields and re-encodes to the same bytes (apart from the pad byte and unknown direction values and
 * flag bits, which are not kept); handleSignal never throws; the queue
 * stays within queueSize; no handshake for an unresolved address; every entry written was earned
 * by a successful (verified) handshake for exactly that pair, with the only auth type there is.
 */
import { describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../src/audit/sink.js';
import {
  AuthCache,
  AuthManager,
  AuthReporter,
  type AuthenticateRequest,
  type AuthenticateResult,
  type PairResolver,
} from '../../src/auth/index.js';
import { AuthType, wire, type AuthSignal } from '../../src/datapath/index.js';
import { silentLogger } from '../../src/log.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { MemoryAuthMap } from '../helpers/fakes.js';
import { assertTyped, corpus, fc, fuzzAsync, mutatedBytes, seeds, timeoutFor } from './harness.js';

const TARGET = 'ringbuf-records';
const CI_SECONDS = 3;
const IDS = [
  'spiffe://demo.local/ns/demo/sa/web',
  'spiffe://demo.local/ns/demo/sa/db',
  'spiffe://demo.local/ns/demo/sa/api',
];
const NODES = new Map([
  [0, 'node-a'],
  [7, 'node-b'],
]);
const QUEUE_SIZE = 8;

const resolver: PairResolver = {
  spiffeIdOf: (n) => IDS[n - 1],
  numericIdFor: (s) => {
    const i = IDS.indexOf(s);
    if (i < 0) throw new Error(`unknown ${s}`);
    return i + 1;
  },
  nodeNameOf: (n) => NODES.get(n),
  nodeIdOf: (name) => [...NODES].find(([, v]) => v === name)?.[0],
  nodeEndpoint: (name) =>
    [...NODES.values()].includes(name) ? { address: '192.0.2.2', port: 4250 } : undefined,
  pairRequired: () => true,
};

/** A handshake that "verifies" only peers outside `refuse`; every success is recorded. */
class RecordingAuthenticator {
  readonly succeeded: string[] = [];
  calls = 0;
  constructor(
    private readonly clock: FakeClock,
    private readonly refuse: ReadonlySet<string>,
  ) {}
  async authenticate(req: AuthenticateRequest): Promise<AuthenticateResult> {
    this.calls++;
    await Promise.resolve();
    if (this.refuse.has(req.remoteId))
      throw Object.assign(new Error('handshake: svid-untrusted'), { reason: 'svid-untrusted' });
    this.succeeded.push(`${req.localId} ${req.remoteId} ${req.peerNode}`);
    return { expiresAtMs: this.clock.now() + 60_000, durationMs: 1 };
  }
}

const u32 = fc.oneof(fc.constantFrom(0, 1, 2, 3, 7, 0xffffffff), fc.nat({ max: 0xffffffff }));
const built = fc
  .record({
    localId: u32,
    remoteId: u32,
    remoteNode: u32,
    authType: fc.oneof(fc.constant(AuthType.SpiffeMtls), fc.integer({ min: 0, max: 255 })),
    direction: fc.integer({ min: 0, max: 255 }),
    flags: fc.integer({ min: 0, max: 255 }),
    pad: fc.integer({ min: 0, max: 255 }),
    bootNs: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    syn: fc.uint8Array({ minLength: 0, maxLength: wire.SYN_MAX }),
  })
  .map((r) => {
    const b = Buffer.alloc(wire.signal.size);
    b.writeUInt32LE(r.localId, 0);
    b.writeUInt32LE(r.remoteId, 4);
    b.writeUInt32LE(r.remoteNode, 8);
    b.writeUInt8(r.authType, 12);
    b.writeUInt8(r.direction, 13);
    b.writeUInt8(r.flags, 14);
    b.writeUInt8(r.pad, 15);
    b.writeBigUInt64LE(r.bootNs, 16);
    b.writeUInt16LE(r.syn.length, 24);
    Buffer.from(r.syn).copy(b, 32);
    return b;
  });
const record = fc.oneof(
  built,
  fc.uint8Array({ minLength: wire.signal.size, maxLength: wire.signal.size }).map((u) => Buffer.from(u)),
  mutatedBytes(seeds(TARGET), 3),
);

function decodeChecked(rec: Buffer): AuthSignal | undefined {
  let s: AuthSignal;
  try {
    s = wire.signal.decode(rec);
  } catch (err) {
    assertTyped(err, ['MESHAUTH_ERR_DATAPATH_INPUT']);
    expect(rec.length).toBeLessThan(wire.signal.size);
    return undefined;
  }
  expect(rec.length).toBeGreaterThanOrEqual(wire.signal.size);
  for (const v of [s.localId, s.remoteId, s.remoteNode]) expect(v >>> 0).toBe(v);
  expect(s.authType).toBe(rec[12]);
  expect(['egress', 'ingress']).toContain(s.direction);
  const again = wire.signal.encode({
    ...s,
    permissive: s.permissive ?? false,
    unresolved: s.unresolved ?? false,
  });
  // Unknown direction values and flag bits are not kept; everything else round-trips.
  expect(again.subarray(0, 13)).toEqual(rec.subarray(0, 13));
  expect(again.subarray(16, 24)).toEqual(rec.subarray(16, 24));
  // A SYN decodes to exactly syn_len bytes; a syn_len of 0 or above MA_SYN_MAX to none.
  const synLen = rec.readUInt16LE(24);
  if (synLen > 0 && synLen <= wire.SYN_MAX) expect(s.syn).toEqual(rec.subarray(32, 32 + synLen));
  else expect(s.syn).toBeUndefined();
  return s;
}

describe('fuzz: ring-buffer records', () => {
  it('corpus records decode to their fields', () => {
    const byName = new Map(corpus(TARGET).map((f) => [f.name, wire.signal.decode(f.data)]));
    expect(byName.get('egress-known-pair')).toMatchObject({
      localId: 1,
      remoteId: 2,
      remoteNode: 7,
      direction: 'egress',
    });
    expect(byName.get('ingress-permissive')).toMatchObject({
      direction: 'ingress',
      permissive: true,
      unresolved: false,
    });
    expect(byName.get('unresolved')).toMatchObject({ unresolved: true });
  });

  it('regression: a record with an auth type other than SPIFFE mTLS starts no handshake', async () => {
    // Found by this target: such a record made the manager run the mTLS handshake and write an
    // entry keyed by the foreign auth type, one no handshake of that type had earned.
    const clock = new FakeClock(Date.now());
    const map = new MemoryAuthMap(() => clock.now());
    const auth = new RecordingAuthenticator(clock, new Set());
    const manager = new AuthManager({
      cache: new AuthCache(map, { now: () => clock.now() }),
      resolver,
      authenticator: auth,
      reporter: new AuthReporter({ audit: new MemoryAuditSink(), logger: silentLogger() }),
      logger: silentLogger(),
      clock,
      options: { maxConcurrent: 2, queueSize: QUEUE_SIZE, retryBaseMs: 40, retryMaxMs: 200, reauthAt: 0.5 },
    });
    manager.handleSignal(
      wire.signal.decode(corpus(TARGET).find((f) => f.name === 'unknown-auth-type')!.data),
    );
    await manager.idle();
    expect(auth.calls).toBe(0);
    expect(map.data.size).toBe(0);
    manager.handleSignal(
      wire.signal.decode(corpus(TARGET).find((f) => f.name === 'egress-known-pair')!.data),
    );
    await manager.idle();
    await manager.close();
    expect(auth.calls).toBe(1);
    expect([...map.data.values()].map(([k]) => k.authType)).toEqual([AuthType.SpiffeMtls]);
  });

  it(
    'records through the auth manager: no unearned entry, bounded queue, typed decode errors',
    async () => {
      await fuzzAsync(
        TARGET,
        CI_SECONDS,
        fc.record({
          records: fc.array(record, { minLength: 1, maxLength: 40 }),
          refuse: fc.subarray(IDS),
        }),
        async ({ records, refuse }) => {
          const clock = new FakeClock(Date.now());
          const map = new MemoryAuthMap(() => clock.now());
          const cache = new AuthCache(map, { now: () => clock.now() });
          const auth = new RecordingAuthenticator(clock, new Set(refuse));
          const manager = new AuthManager({
            cache,
            resolver,
            authenticator: auth,
            reporter: new AuthReporter({ audit: new MemoryAuditSink(), logger: silentLogger() }),
            logger: silentLogger(),
            clock,
            options: {
              maxConcurrent: 2,
              queueSize: QUEUE_SIZE,
              retryBaseMs: 40,
              retryMaxMs: 200,
              reauthAt: 0.5,
            },
          });
          const pairs = new Set<string>();
          for (const rec of records) {
            const s = decodeChecked(rec);
            if (!s) continue;
            manager.handleSignal(s);
            expect(manager.stats().queued).toBeLessThanOrEqual(QUEUE_SIZE);
            const names = [
              resolver.spiffeIdOf(s.localId),
              resolver.spiffeIdOf(s.remoteId),
              resolver.nodeNameOf(s.remoteNode),
            ];
            if (!s.unresolved && names.every((n) => n !== undefined)) pairs.add(names.join(' '));
          }
          await manager.idle();
          await manager.close();
          // At most one handshake per resolvable pair signalled (no retry: the clock stood still).
          expect(auth.calls).toBeLessThanOrEqual(pairs.size);
          for (const [key, value] of map.data.values()) {
            const names = `${resolver.spiffeIdOf(key.localId)} ${resolver.spiffeIdOf(key.remoteId)} ${resolver.nodeNameOf(key.remoteNode)}`;
            expect(auth.succeeded, `entry ${JSON.stringify(key)} without a handshake`).toContain(names);
            expect(key.authType, `entry ${JSON.stringify(key)}`).toBe(AuthType.SpiffeMtls);
            expect(value.expiresAtMs).toBeGreaterThan(clock.now());
          }
        },
      );
    },
    timeoutFor(CI_SECONDS),
  );
});
