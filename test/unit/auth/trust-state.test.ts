/**
 * The auth manager's trust state: the kernel map is the truth (mirror repairs, clocks), entries
 * are revoked when the authority they relied on leaves the bundle, and writes re-check trust at
 * the moment they happen.
 */
import { X509Certificate } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import {
  AuthCache,
  AuthGc,
  AuthManager,
  AuthReporter,
  entryWriteCheck,
  type AuthenticateRequest,
  type AuthenticateResult,
  type EntryTrust,
  type MirrorRepairReason,
  type PairResolver,
} from '../../../src/auth/index.js';
import type { AuthKey } from '../../../src/datapath/types.js';
import type { TrustBundles } from '../../../src/spiffe/index.js';
import { silentLogger } from '../../../src/log.js';
import { ManualSignals, MemoryAuthMap } from '../../helpers/fakes.js';
import { newPki, type TestPki } from '../../integration/handshake/pki.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const DB = 'spiffe://demo.local/ns/demo/sa/db';
const KEY: AuthKey = { localId: 1, remoteId: 2, remoteNode: 7, authType: 1 };

let caOld: TestPki;
let caNew: TestPki;
let fpOld: string;
let fpNew: string;
let both: TrustBundles;

beforeAll(async () => {
  caOld = await newPki('demo.local');
  caNew = await newPki('demo.local');
  fpOld = new X509Certificate(caOld.bundles.get('demo.local')![0]!).fingerprint256;
  fpNew = new X509Certificate(caNew.bundles.get('demo.local')![0]!).fingerprint256;
  both = new Map([
    ['demo.local', [...caOld.bundles.get('demo.local')!, ...caNew.bundles.get('demo.local')!]],
  ]);
});

function trustOn(fp: string): EntryTrust {
  return {
    chains: [
      { trustDomain: 'demo.local', anchors: [fp], chain: [] },
      { trustDomain: 'demo.local', anchors: [fp], chain: [] },
    ],
  };
}

function resolver(): PairResolver & { required: boolean } {
  const ids = [WEB, DB];
  return {
    required: true,
    spiffeIdOf: (n) => ids[n - 1],
    numericIdFor: (s) => ids.indexOf(s) + 1,
    nodeNameOf: (n) => (n === 7 ? 'node-b' : undefined),
    nodeIdOf: (name) => (name === 'node-b' ? 7 : undefined),
    nodeEndpoint: (name) => (name === 'node-b' ? { address: '192.0.2.2', port: 4250 } : undefined),
    pairRequired(this: { required: boolean }) {
      return this.required;
    },
  };
}

/** A handshake the test completes by hand (so it can change the world while it is held open). */
class HeldAuthenticator {
  calls: AuthenticateRequest[] = [];
  fail: string | undefined;
  trust: EntryTrust | undefined;
  ttlMs = 60_000;
  hold = false;
  private release: (() => void) | undefined;
  async authenticate(req: AuthenticateRequest): Promise<AuthenticateResult> {
    this.calls.push(req);
    if (this.hold) await new Promise<void>((r) => (this.release = r));
    else await Promise.resolve();
    if (this.fail) throw Object.assign(new Error(`handshake: ${this.fail}`), { reason: this.fail });
    return {
      expiresAtMs: Date.now() + this.ttlMs,
      durationMs: 1,
      ...(this.trust ? { trust: this.trust } : {}),
    };
  }
  /** Resolves once a handshake is waiting to be released. */
  async held(): Promise<void> {
    while (!this.release) await new Promise((r) => setTimeout(r, 1));
  }
  releaseNow(): void {
    const r = this.release;
    this.release = undefined;
    this.hold = false;
    r?.();
  }
}

function setup() {
  const map = new MemoryAuthMap();
  const repairs: MirrorRepairReason[] = [];
  const cache = new AuthCache(map, { onRepair: (r) => repairs.push(r) });
  const audit = new MemoryAuditSink();
  const auth = new HeldAuthenticator();
  const res = resolver();
  const signals = new ManualSignals();
  const world = { svid: true, local: true, remoteOnNode: true, policy: true };
  const revoked: string[] = [];
  const manager = new AuthManager({
    cache,
    resolver: res,
    authenticator: auth,
    reporter: new AuthReporter({
      audit,
      logger: silentLogger(),
      observer: { revoked: (t) => revoked.push(t) },
    }),
    logger: silentLogger(),
    writeCheck: entryWriteCheck({
      holdsSvid: () => world.svid,
      isLocalIdentity: () => world.local,
      isWorkloadOnNode: () => world.remoteOnNode,
      requiresPair: () => world.policy,
    }),
    options: { maxConcurrent: 4, queueSize: 100, retryBaseMs: 60_000, retryMaxMs: 60_000, reauthAt: 0.5 },
  });
  manager.start(signals);
  const gc = new AuthGc({
    cache,
    audit,
    logger: silentLogger(),
    obsolete: () => undefined,
    describe: () => ({}),
  });
  return { map, cache, repairs, audit, auth, res, signals, manager, world, revoked, gc };
}

let current: ReturnType<typeof setup> | undefined;
afterEach(async () => {
  current?.signals.close();
  await current?.manager.close();
  current = undefined;
});

async function signal(t: ReturnType<typeof setup>): Promise<void> {
  t.signals.emit({ localId: KEY.localId, remoteId: KEY.remoteId, remoteNode: KEY.remoteNode });
  await t.manager.idle();
}

describe('the kernel map is the truth', () => {
  it('an entry deleted from the kernel behind our back: the next signal handshakes again and the entry comes back', async () => {
    const t = (current = setup());
    await signal(t);
    expect(t.auth.calls).toHaveLength(1);
    expect(t.map.delete(KEY)).toBe(true); // bpftool map delete, a map reset, ...
    expect(t.cache.isLive(KEY)).toBe(true); // the mirror alone would still say live
    await signal(t);
    expect(t.auth.calls).toHaveLength(2);
    expect(t.map.lookup(KEY)).toBeDefined();
    expect(t.repairs).toEqual(['kernel-missing']);
  });

  it('an entry another tool wrote is adopted (no handshake); one it shortened to expired is re-authenticated', async () => {
    const t = (current = setup());
    t.map.setExpiryClockMs(KEY, t.map.clockNowMs() + 30_000);
    await signal(t);
    expect(t.auth.calls).toHaveLength(0);
    expect(t.repairs).toEqual(['kernel-extra']);
    expect(t.cache.get(KEY)?.origin).toBe('restored');
    t.map.setExpiryClockMs(KEY, t.map.clockNowMs() - 1);
    await signal(t);
    expect(t.auth.calls).toHaveLength(1);
    expect(t.repairs).toEqual(['kernel-extra', 'kernel-expired']);
  });

  it('liveness is judged in the kernel clock: a wall clock stepped back does not keep an expired entry alive', async () => {
    const t = (current = setup());
    let kernel = 1_000_000;
    t.map.kernelNow = () => kernel;
    // The wall clock stands still (only Date is faked: the manager's timers run for real), so the
    // handshake's expiry and its conversion to the kernel clock read the same instant.
    vi.useFakeTimers({ toFake: ['Date'] });
    onTestFinished(() => void vi.useRealTimers());
    await signal(t);
    expect(t.cache.get(KEY)!.expiresAtClockMs).toBe(1_000_000 + 60_000);
    // CLOCK_BOOTTIME moves on 61 s; the wall clock (Date.now) does not (it was stepped back).
    kernel += 61_000;
    expect(t.cache.isLive(KEY)).toBe(false);
    await signal(t);
    expect(t.auth.calls).toHaveLength(2);
    // GC removes what the kernel clock says expired even while the wall clock says live.
    kernel += 61_000;
    expect(t.gc.run()).toEqual({ expired: 1, removed: 0 });
    expect(t.map.lookup(KEY)).toBeUndefined();
  });

  it('GC reconciles the whole mirror with the kernel map and counts every repair', () => {
    const t = (current = setup());
    const k2 = { ...KEY, remoteId: 1 };
    t.cache.set(KEY, { expiresAtMs: Date.now() + 60_000 }, 'client');
    t.cache.set(k2, { expiresAtMs: Date.now() + 60_000 }, 'client');
    t.map.delete(KEY);
    t.map.setExpiryClockMs(k2, t.map.clockNowMs() + 5_000);
    const k3 = { ...KEY, localId: 2 };
    t.map.setExpiryClockMs(k3, t.map.clockNowMs() + 5_000);
    expect(t.cache.reconcile()).toEqual({ 'kernel-missing': 1, 'expiry-differs': 1, 'kernel-extra': 1 });
    expect(t.cache.reconcile()).toEqual({});
    expect(t.cache.size).toBe(2);
  });
});

describe('bundle changes revoke what relied on a removed authority', () => {
  it('revokes at once (bundle-revoked), re-authenticates, and keeps entries anchored elsewhere', async () => {
    const t = (current = setup());
    t.manager.noteTrustBundles(both);
    t.auth.trust = trustOn(fpOld);
    await signal(t);
    const other = { ...KEY, remoteId: 1 };
    t.cache.set(other, { expiresAtMs: Date.now() + 60_000 }, 'server', trustOn(fpNew));
    // The peer's new SVID is from a CA we do not trust: re-authentication fails.
    t.auth.fail = 'svid-untrusted';
    const r = t.manager.onTrustBundlesChanged(caNew.bundles);
    expect(r).toEqual({ revoked: 1, reauthenticating: 1 });
    expect(t.map.lookup(KEY)).toBeUndefined();
    expect(t.map.lookup(other)).toBeDefined();
    await t.manager.idle();
    expect(t.auth.calls.map((c) => c.localId)).toEqual([WEB, WEB]);
    expect(t.map.lookup(KEY)).toBeUndefined();
    const removed = t.audit.events.filter((e) => e.type === 'entry-removed');
    expect(removed).toHaveLength(1);
    expect(removed[0]).toMatchObject({
      reason: 'bundle-revoked',
      localId: WEB,
      remoteId: DB,
      node: 'node-b',
    });
    expect(t.audit.events.some((e) => e.type === 'reauth' && e.details?.['why'] === 'reauth-bundle')).toBe(
      true,
    );
    expect(t.revoked).toEqual(['bundle-changed']);
  });

  it('entries restored without provenance are revoked when an authority of their trust domain leaves', () => {
    const t = (current = setup());
    t.manager.noteTrustBundles(both);
    t.map.update(KEY, { expiresAtMs: Date.now() + 60_000 });
    t.cache.restore();
    t.res.required = false;
    expect(t.manager.onTrustBundlesChanged(both)).toEqual({ revoked: 0, reauthenticating: 0 });
    expect(t.manager.onTrustBundlesChanged(caNew.bundles)).toEqual({ revoked: 1, reauthenticating: 0 });
    expect(t.map.lookup(KEY)).toBeUndefined();
  });

  it('a failed re-authentication of an entry whose trust is gone deletes it', async () => {
    const t = (current = setup());
    t.auth.trust = trustOn(fpOld);
    await signal(t);
    // The manager learns the new bundles without a revocation pass (e.g. the event was missed).
    t.manager.noteTrustBundles(caNew.bundles);
    t.auth.fail = 'peer-unreachable';
    expect(t.manager.onLocalSvidRotated(WEB)).toBe(1);
    await t.manager.idle();
    expect(t.map.lookup(KEY)).toBeUndefined();
    expect(t.revoked).toEqual(['reauth-failed']);
    // An entry whose anchor is still trusted survives a failed re-authentication.
    t.cache.set(KEY, { expiresAtMs: Date.now() + 60_000 }, 'client', trustOn(fpNew));
    t.manager.onLocalSvidRotated(WEB);
    await t.manager.idle();
    expect(t.map.lookup(KEY)).toBeDefined();
  });

  it('a bundle change while a handshake is in flight: the result is not written (bundle-revoked)', async () => {
    const t = (current = setup());
    t.manager.noteTrustBundles(both);
    t.auth.trust = trustOn(fpOld);
    t.auth.hold = true;
    t.signals.emit({ localId: KEY.localId, remoteId: KEY.remoteId, remoteNode: KEY.remoteNode });
    await t.auth.held();
    t.manager.onTrustBundlesChanged(caNew.bundles);
    t.auth.releaseNow();
    await t.manager.idle();
    expect(t.map.lookup(KEY)).toBeUndefined();
    expect(t.audit.events.find((e) => e.type === 'handshake-failed')?.reason).toBe('bundle-revoked');
  });
});

describe('writes re-check trust at the moment they happen', () => {
  it.each([
    ['svid', 'svid-removed'],
    ['local', 'identity-removed'],
    ['remoteOnNode', 'workload-moved'],
    ['policy', 'not-required-by-policy'],
  ] as const)(
    'client side: %s gone while the handshake is held open → no entry (%s)',
    async (what, reason) => {
      const t = (current = setup());
      t.auth.hold = true;
      t.signals.emit({ localId: KEY.localId, remoteId: KEY.remoteId, remoteNode: KEY.remoteNode });
      await t.auth.held();
      t.world[what] = false;
      t.auth.releaseNow();
      await t.manager.idle();
      expect(t.map.data.size).toBe(0);
      expect(t.audit.events.filter((e) => e.type === 'entry-written')).toEqual([]);
      expect(t.audit.events.find((e) => e.type === 'handshake-failed')?.reason).toBe(reason);
    },
  );

  it('server side: the reverse entry is refused with the reason when the SVID is gone', () => {
    const t = (current = setup());
    t.world.svid = false;
    const r = { localId: DB, remoteId: WEB, peerNode: 'node-b', expiresAtMs: Date.now() + 60_000 };
    expect(() => t.manager.onServerAuthenticated(r)).toThrow(
      expect.objectContaining({ reason: 'svid-removed' }),
    );
    expect(t.map.data.size).toBe(0);
    t.world.svid = true;
    t.manager.onServerAuthenticated(r);
    expect(t.map.data.size).toBe(1);
  });

  it('server side: no entry for a pair no enforce or permissive rule covers (not-required-by-policy)', () => {
    const t = (current = setup());
    t.world.policy = false;
    const r = { localId: DB, remoteId: WEB, peerNode: 'node-b', expiresAtMs: Date.now() + 60_000 };
    expect(() => t.manager.onServerAuthenticated(r)).toThrow(
      expect.objectContaining({ reason: 'not-required-by-policy' }),
    );
    expect(t.map.data.size).toBe(0);
  });
});
