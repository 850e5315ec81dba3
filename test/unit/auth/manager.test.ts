import { afterEach, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import {
  AuthCache,
  AuthGc,
  AuthManager,
  AuthReporter,
  type AuditBackpressure,
  type AuthenticateRequest,
  type AuthenticateResult,
  type PairResolver,
} from '../../../src/auth/index.js';
import type { AuthKey } from '../../../src/datapath/index.js';
import type { Svid } from '../../../src/spiffe/index.js';
import { silentLogger } from '../../../src/log.js';
import { sleep } from '../../../src/sync.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { ManualSignals, MemoryAuthMap } from '../../helpers/fakes.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const DB = 'spiffe://demo.local/ns/demo/sa/db';
const API = 'spiffe://demo.local/ns/demo/sa/api';

function resolver(): PairResolver & { required: boolean } {
  const ids = [WEB, DB, API];
  return {
    required: true,
    spiffeIdOf: (n) => ids[n - 1],
    numericIdFor: (s) => {
      const i = ids.indexOf(s);
      if (i < 0) throw new Error(`unknown ${s}`);
      return i + 1;
    },
    nodeNameOf: (n) => (n === 7 ? 'node-b' : undefined),
    nodeIdOf: (name) => (name === 'node-b' ? 7 : undefined),
    nodeEndpoint: (name) => (name === 'node-b' ? { address: '192.0.2.2', port: 4250 } : undefined),
    pairRequired(this: { required: boolean }) {
      return this.required;
    },
  };
}

class FakeAuthenticator {
  constructor(private readonly clock: FakeClock) {}
  calls: AuthenticateRequest[] = [];
  active = 0;
  maxActive = 0;
  delayMs = 5;
  fail: string | undefined;
  ttlMs = 60_000;
  async authenticate(req: AuthenticateRequest): Promise<AuthenticateResult> {
    this.calls.push(req);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await sleep(this.delayMs);
      if (this.fail) throw Object.assign(new Error(`handshake: ${this.fail}`), { reason: this.fail });
      return { expiresAtMs: this.clock.now() + this.ttlMs, durationMs: this.delayMs, tlsVersion: 'TLSv1.3' };
    } finally {
      this.active--;
    }
  }
}

/** Records what the manager tells datapath.synReplay. */
class SynReplayRecorder {
  calls: string[] = [];
  peerWritten: Array<Promise<boolean> | undefined> = [];
  signalled(k: AuthKey, syn: Buffer): void {
    this.calls.push(`signalled ${k.localId}->${k.remoteId} ${syn.length}`);
  }
  authenticated(k: AuthKey, peerWritten?: Promise<boolean>): Promise<void> {
    this.calls.push(`authenticated ${k.localId}->${k.remoteId}`);
    this.peerWritten.push(peerWritten);
    return Promise.resolve();
  }
  failed(k: AuthKey): void {
    this.calls.push(`failed ${k.localId}->${k.remoteId}`);
  }
}

function setup(
  opts: Partial<{
    maxConcurrent: number;
    queueSize: number;
    retryBaseMs: number;
    auditBackpressure: AuditBackpressure;
  }> = {},
) {
  // Manager, cache and handshakes share a clock that moves only when a test advances it (the
  // handshakes themselves still take a few real milliseconds).
  const clock = new FakeClock(Date.now());
  const map = new MemoryAuthMap(() => clock.now());
  const cache = new AuthCache(map, { now: () => clock.now() });
  const audit = new MemoryAuditSink();
  const auth = new FakeAuthenticator(clock);
  const res = resolver();
  const signals = new ManualSignals();
  const synReplay = new SynReplayRecorder();
  const manager = new AuthManager({
    ...(opts.auditBackpressure ? { auditBackpressure: opts.auditBackpressure } : {}),
    synReplay,
    cache,
    resolver: res,
    authenticator: auth,
    reporter: new AuthReporter({ audit, logger: silentLogger() }),
    logger: silentLogger(),
    clock,
    options: {
      maxConcurrent: opts.maxConcurrent ?? 4,
      queueSize: opts.queueSize ?? 100,
      retryBaseMs: opts.retryBaseMs ?? 40,
      retryMaxMs: 200,
      reauthAt: 0.5,
    },
  });
  manager.start(signals);
  return { clock, map, cache, audit, auth, res, signals, manager, synReplay };
}

let current: ReturnType<typeof setup> | undefined;
afterEach(async () => {
  current?.signals.close();
  await current?.manager.close();
  current = undefined;
});

describe('AuthManager audit backpressure', () => {
  const waitFor = async (cond: () => boolean): Promise<void> => {
    const end = Date.now() + 2000;
    while (!cond()) {
      if (Date.now() > end) throw new Error('timeout');
      await sleep(2);
    }
  };

  it('starts no handshake while the audit queue is above its high-water mark, resumes at the low one', async () => {
    let depth = 90;
    const t = (current = setup({
      auditBackpressure: { depth: () => depth, highWater: 80, lowWater: 50, pollMs: 20 },
    }));
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    t.signals.emit({ localId: 1, remoteId: 3, remoteNode: 7 });
    t.signals.emit({ localId: 2, remoteId: 3, remoteNode: 7 });
    // Queued, none started: the pairs wait, their signals are audited (droppable) as before.
    expect(t.auth.calls).toHaveLength(0);
    expect(t.manager.stats()).toMatchObject({ queued: 3, inFlight: 0, auditBackpressure: 1, auditPauses: 1 });
    expect(t.audit.events.map((e) => e.type)).toEqual(['signal', 'signal', 'signal']);
    // Below the high-water mark but above the low one: still paused (hysteresis).
    depth = 60;
    t.clock.advance(20);
    expect(t.auth.calls).toHaveLength(0);
    expect(t.manager.stats().auditBackpressure).toBe(1);
    depth = 50;
    t.clock.advance(20);
    expect(t.auth.calls).toHaveLength(3);
    expect(t.manager.stats()).toMatchObject({ queued: 0, inFlight: 3, auditBackpressure: 0, auditPauses: 1 });
    await t.manager.idle();
    expect(t.map.data.size).toBe(3);
  });

  it('lets in-flight handshakes finish but starts no queued one once the mark is crossed', async () => {
    let depth = 0;
    const t = (current = setup({
      maxConcurrent: 2,
      auditBackpressure: { depth: () => depth, highWater: 80, lowWater: 50 },
    }));
    for (const remoteId of [2, 3]) t.signals.emit({ localId: 1, remoteId, remoteNode: 7 });
    for (const remoteId of [1, 3]) t.signals.emit({ localId: 2, remoteId, remoteNode: 7 });
    expect(t.auth.calls).toHaveLength(2);
    depth = 80;
    await waitFor(() => t.map.data.size === 2);
    expect(t.auth.calls).toHaveLength(2);
    expect(t.manager.stats()).toMatchObject({ queued: 2, inFlight: 0, auditBackpressure: 1 });
    depth = 10;
    t.clock.advance(20);
    await t.manager.idle();
    expect(t.auth.calls).toHaveLength(4);
    expect(t.map.data.size).toBe(4);
    expect(t.manager.stats()).toMatchObject({ auditBackpressure: 0, auditPauses: 1 });
  });
});

describe('AuthManager', () => {
  it('turns one signal into one handshake and one kernel entry with the handshake expiry', async () => {
    const t = (current = setup());
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    await t.manager.idle();
    expect(t.auth.calls).toEqual([
      expect.objectContaining({
        localId: WEB,
        remoteId: DB,
        peerNode: 'node-b',
        peerAddress: '192.0.2.2',
        peerPort: 4250,
      }),
    ]);
    const v = t.map.lookup({ localId: 1, remoteId: 2, remoteNode: 7, authType: 1 });
    expect(v?.expiresAtMs).toBeGreaterThan(Date.now() + 50_000);
    expect(t.audit.events.map((e) => e.type)).toEqual(['signal', 'handshake-succeeded', 'entry-written']);
  });

  it('hands a dropped SYN to synReplay, and the pair outcome after the entry write or the failure', async () => {
    const t = (current = setup());
    const syn = Buffer.alloc(40);
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7, syn });
    // Not kept: an ingress-direction drop, a permissive pair, a signal without bytes.
    t.signals.emit({ localId: 1, remoteId: 3, remoteNode: 7, syn, direction: 'ingress' });
    t.signals.emit({ localId: 2, remoteId: 1, remoteNode: 7, syn, permissive: true });
    t.signals.emit({ localId: 2, remoteId: 3, remoteNode: 7 });
    await t.manager.idle();
    expect(t.synReplay.calls.filter((c) => c.startsWith('signalled'))).toEqual(['signalled 1->2 40']);
    expect(t.synReplay.calls).toContain('authenticated 1->2');
    expect(t.map.lookup({ localId: 1, remoteId: 2, remoteNode: 7, authType: 1 })).toBeDefined();
    // The per-pair handshake implies the peer's entry: no confirmation to wait for.
    expect(t.synReplay.peerWritten[0]).toBeUndefined();
    t.auth.fail = 'peer-rejected';
    t.signals.emit({ localId: 3, remoteId: 2, remoteNode: 7, syn: Buffer.alloc(60) });
    await t.manager.idle();
    expect(t.synReplay.calls.filter((c) => c.includes('3->2'))).toEqual(['signalled 3->2 60', 'failed 3->2']);
  });

  it('pre-authenticates pairs before any signal, skipping live ones', async () => {
    const t = (current = setup());
    const k = (remoteId: number) => ({ localId: 1, remoteId, remoteNode: 7, authType: 1 });
    expect(t.manager.preauthenticate([k(2), k(3)])).toBe(2);
    await t.manager.idle();
    expect(t.auth.calls.map((c) => c.remoteId)).toEqual([DB, API]);
    expect(t.map.data.size).toBe(2);
    // Both are live now: nothing to do.
    expect(t.manager.preauthenticate([k(2), k(3)])).toBe(0);
    await t.manager.idle();
    expect(t.auth.calls).toHaveLength(2);
    expect(t.audit.events.filter((e) => e.type === 'signal')).toHaveLength(0);
  });

  it('de-duplicates signals for a pair that is already pending or live', async () => {
    const t = (current = setup());
    for (let i = 0; i < 20; i++) t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    await t.manager.idle();
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 }); // live now
    await t.manager.idle();
    expect(t.auth.calls).toHaveLength(1);
  });

  it('bounds concurrent handshakes and the queue', async () => {
    const t = (current = setup({ maxConcurrent: 2, queueSize: 3 }));
    t.auth.delayMs = 20;
    // 9 distinct pairs: 2 start at once, 3 wait in the queue, 4 are dropped (the next signal retries them).
    for (const l of [1, 2, 3])
      for (const r of [1, 2, 3]) t.signals.emit({ localId: l, remoteId: r, remoteNode: 7 });
    expect(t.manager.stats()).toMatchObject({ inFlight: 2, queued: 3 });
    await t.manager.idle();
    expect(t.auth.maxActive).toBe(2);
    expect(t.auth.calls).toHaveLength(5);
    expect(t.map.data.size).toBe(5);
  });

  it('never writes an entry for a failed handshake, backs off, and retries while signals continue', async () => {
    const t = (current = setup({ retryBaseMs: 60 }));
    t.auth.fail = 'svid-untrusted';
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    await t.manager.idle();
    expect(t.map.data.size).toBe(0);
    const failed = t.audit.events.find((e) => e.type === 'handshake-failed');
    expect(failed).toMatchObject({ reason: 'svid-untrusted', localId: WEB, remoteId: DB, node: 'node-b' });
    // A signal during backoff does not start a handshake (the clock has not moved: still backing off).
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    expect(t.manager.stats().queued).toBe(0);
    expect(t.manager.stats().backoff).toBe(1);
    expect(t.auth.calls).toHaveLength(1);
    // Just before the shortest possible delay (half of retryBaseMs, full jitter) nothing is retried.
    t.auth.fail = undefined;
    t.clock.advance(29);
    expect(t.manager.stats().queued + t.manager.stats().inFlight).toBe(0);
    expect(t.auth.calls).toHaveLength(1);
    // The retry timer re-attempts on its own by the longest delay; once the peer is fixed the entry appears.
    t.clock.advance(31);
    await t.manager.idle();
    expect(t.map.data.size).toBe(1);
    expect(t.auth.calls.length).toBeGreaterThanOrEqual(2);
  });

  it("retries a responder's audit-busy refusal with its backoff, like any failure, and writes nothing meanwhile", async () => {
    const t = (current = setup({ retryBaseMs: 60 }));
    t.auth.fail = 'audit-busy';
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    await t.manager.idle();
    expect(t.map.data.size).toBe(0);
    expect(t.audit.events.find((e) => e.type === 'handshake-failed')).toMatchObject({
      reason: 'audit-busy',
      direction: 'client',
    });
    expect(t.manager.stats().backoff).toBe(1);
    // The responder's queue drained: the retry timer (by the longest delay) authenticates the pair.
    t.auth.fail = undefined;
    t.clock.advance(60);
    await t.manager.idle();
    expect(t.map.data.size).toBe(1);
    expect(t.auth.calls).toHaveLength(2);
  });

  it('forgets the failures of pairs nobody signals any more (tracked pairs stay bounded)', async () => {
    const t = (current = setup({ retryBaseMs: 60 }));
    t.auth.fail = 'peer-unreachable';
    const pairs = [
      { localId: 1, remoteId: 2, remoteNode: 7 },
      { localId: 1, remoteId: 3, remoteNode: 7 },
      { localId: 2, remoteId: 3, remoteNode: 7 },
    ];
    for (const p of pairs) t.signals.emit(p);
    await t.manager.idle();
    expect(t.manager.stats()).toMatchObject({ backoff: 3, tracked: 3 });
    // One pair keeps being signalled (its packets keep being retransmitted), the others fall silent.
    for (let ms = 0; ms < 40_000; ms += 100) {
      t.clock.advance(100);
      if (ms % 1000 === 0) t.signals.emit(pairs[0]!);
      await t.manager.idle();
    }
    expect(t.manager.stats().tracked).toBe(1);
    // Silent too: after the retry window and the longest delay, nothing is remembered.
    for (let ms = 0; ms < 31_000; ms += 100) {
      t.clock.advance(100);
      await t.manager.idle();
    }
    expect(t.manager.stats()).toMatchObject({ backoff: 0, tracked: 0 });
    expect(t.map.data.size).toBe(0);
    // A new signal starts over (one more handshake) and still fails closed.
    const calls = t.auth.calls.length;
    t.signals.emit(pairs[1]!);
    await t.manager.idle();
    expect(t.auth.calls).toHaveLength(calls + 1);
    expect(t.manager.stats().tracked).toBe(1);
  });

  it('treats a handshake result that is already expired as a failure', async () => {
    const t = (current = setup());
    t.auth.ttlMs = -1000;
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    await t.manager.idle();
    expect(t.map.data.size).toBe(0);
    expect(t.audit.events.some((e) => e.reason === 'entry-already-expired')).toBe(true);
  });

  it('reports an entry that the kernel refuses as a failure', async () => {
    const t = (current = setup());
    t.map.failWrites = true;
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    await t.manager.idle();
    expect(t.cache.size).toBe(0);
    expect(t.audit.events.some((e) => e.reason === 'entry-write-failed')).toBe(true);
  });

  it('writes the reverse entry for the server side of a handshake', () => {
    const t = (current = setup());
    const expiresAtMs = Date.now() + 30_000;
    const key = t.manager.onServerAuthenticated({
      localId: DB,
      remoteId: WEB,
      peerNode: 'node-b',
      expiresAtMs,
    });
    expect(key).toEqual({ localId: 2, remoteId: 1, remoteNode: 7, authType: 1 });
    expect(t.map.lookup(key)).toEqual({ expiresAtMs });
    expect(() =>
      t.manager.onServerAuthenticated({ localId: DB, remoteId: WEB, peerNode: 'node-x', expiresAtMs }),
    ).toThrow(/unknown node/);
  });

  it('re-authenticates on local SVID rotation and before expiry', async () => {
    const t = (current = setup());
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    t.signals.emit({ localId: 3, remoteId: 2, remoteNode: 7 });
    await t.manager.idle();
    expect(t.auth.calls).toHaveLength(2);
    expect(t.manager.onLocalSvidRotated(WEB)).toBe(1);
    await t.manager.idle();
    expect(t.auth.calls).toHaveLength(3);
    expect(t.auth.calls[2]).toMatchObject({ localId: WEB });
    // Nothing is due before half of the lifetime...
    expect(t.manager.scheduleExpiryReauth()).toBe(0);
    // ...but short entries are.
    t.auth.ttlMs = 40;
    t.manager.onLocalSvidRotated(API);
    await t.manager.idle();
    t.clock.advance(25);
    t.res.required = false;
    expect(t.manager.scheduleExpiryReauth()).toBe(0); // no longer required by policy
    t.res.required = true;
    expect(t.manager.scheduleExpiryReauth()).toBe(1);
    await t.manager.idle();
    expect(t.audit.events.filter((e) => e.type === 'reauth').map((e) => e.details?.['why'])).toEqual([
      'reauth-rotation',
      'reauth-rotation',
      'reauth-expiry',
    ]);
  });
});

describe('AuthManager identity events', () => {
  const svidOf = (notAfterMs: number) =>
    ({ notAfter: new Date(notAfterMs), leaf: { serialNumber: '0a' } }) as unknown as Svid;

  it('audits a rotation and re-authenticates the pairs of that workload only', async () => {
    const t = (current = setup());
    t.signals.emit({ localId: 1, remoteId: 2, remoteNode: 7 });
    t.signals.emit({ localId: 3, remoteId: 2, remoteNode: 7 });
    await t.manager.idle();
    t.audit.events.length = 0;
    // A first SVID (no previous one) and other events change nothing.
    t.manager.onIdentityEvent({ type: 'svid-updated', spiffeId: WEB, svid: svidOf(2e12) });
    t.manager.onIdentityEvent({ type: 'svid-removed', spiffeId: WEB, reason: 'gone' });
    t.manager.onIdentityEvent({ type: 'source-state', state: 'connected', detail: '' });
    expect(t.manager.stats()).toMatchObject({ queued: 0, inFlight: 0 });
    expect(t.audit.events).toEqual([]);

    t.manager.onIdentityEvent({
      type: 'svid-updated',
      spiffeId: WEB,
      svid: svidOf(2e12),
      previousNotAfter: new Date(1e12),
    });
    await t.manager.idle();
    expect(t.audit.events.map((e) => e.type)).toEqual([
      'svid-rotated',
      'reauth',
      'handshake-succeeded',
      'entry-written',
    ]);
    expect(t.audit.events[0]).toMatchObject({
      localId: WEB,
      details: { notAfterMs: 2e12, previousNotAfterMs: 1e12, serial: '0a' },
    });
    expect(t.auth.calls.map((c) => c.localId)).toEqual([WEB, API, WEB]);
  });
});

describe('AuthCache and AuthGc', () => {
  it('restores the mirror from the kernel map', () => {
    const map = new MemoryAuthMap();
    map.update({ localId: 1, remoteId: 2, remoteNode: 7, authType: 1 }, { expiresAtMs: Date.now() + 1000 });
    map.update({ localId: 2, remoteId: 1, remoteNode: 7, authType: 1 }, { expiresAtMs: Date.now() - 1000 });
    const cache = new AuthCache(map);
    expect(cache.restore()).toBe(2);
    expect(cache.isLive({ localId: 1, remoteId: 2, remoteNode: 7, authType: 1 })).toBe(true);
    expect(cache.isLive({ localId: 2, remoteId: 1, remoteNode: 7, authType: 1 })).toBe(false);
    expect(cache.entries().every((e) => e.origin === 'restored')).toBe(true);
  });

  it('collects expired and obsolete entries and audits why', () => {
    const map = new MemoryAuthMap();
    const cache = new AuthCache(map);
    const audit = new MemoryAuditSink();
    cache.set(
      { localId: 1, remoteId: 2, remoteNode: 7, authType: 1 },
      { expiresAtMs: Date.now() - 1 },
      'client',
    );
    cache.set(
      { localId: 3, remoteId: 2, remoteNode: 7, authType: 1 },
      { expiresAtMs: Date.now() + 9e6 },
      'client',
    );
    cache.set(
      { localId: 2, remoteId: 1, remoteNode: 7, authType: 1 },
      { expiresAtMs: Date.now() + 9e6 },
      'server',
    );
    const gc = new AuthGc({
      cache,
      audit,
      logger: silentLogger(),
      obsolete: (k) => (k.localId === 3 ? 'identity-removed' : undefined),
      describe: () => ({}),
    });
    expect(gc.run()).toEqual({ expired: 1, removed: 1 });
    expect(map.data.size).toBe(1);
    expect(audit.events.map((e) => [e.type, e.reason]).sort()).toEqual([
      ['entry-expired', 'gc-expired'],
      ['entry-removed', 'identity-removed'],
    ]);
    expect(gc.run()).toEqual({ expired: 0, removed: 0 });
  });

  it('runs at once when a workload loses its SVID, not on other identity events', () => {
    const map = new MemoryAuthMap();
    const cache = new AuthCache(map);
    const audit = new MemoryAuditSink();
    const key = { localId: 1, remoteId: 2, remoteNode: 7, authType: 1 };
    cache.set(key, { expiresAtMs: Date.now() + 9e6 }, 'client');
    let svidHeld = true;
    const gc = new AuthGc({
      cache,
      audit,
      logger: silentLogger(),
      obsolete: () => (svidHeld ? undefined : 'svid-removed'),
      describe: () => ({ localId: WEB }),
    });
    svidHeld = false;
    gc.onIdentityEvent({ type: 'source-state' });
    gc.onIdentityEvent({ type: 'svid-updated' });
    expect(map.data.size).toBe(1);
    gc.onIdentityEvent({ type: 'svid-removed' });
    expect(map.data.size).toBe(0);
    expect(audit.events).toEqual([
      expect.objectContaining({ type: 'entry-removed', reason: 'svid-removed', localId: WEB }),
    ]);
  });
});
