/**
 * Trust state against the real things: two auth managers ("node-a", "node-b") with their own
 * pinned kernel auth maps, real TLS handshakes over loopback, signals from the real datapath
 * (BPF_PROG_TEST_RUN → ring buffer → supervised reader).
 *
 * - an entry removed from the kernel map with bpftool is handshaked again on the next signal;
 * - a bundle change that removes the CA deletes the entries at once on both nodes;
 * - the supervised ring-buffer reader comes back after its reader stopped.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import {
  AuthCache,
  AuthManager,
  AuthReporter,
  entryWriteCheck,
  type MirrorRepairReason,
  type PairResolver,
} from '../../../src/auth/index.js';
import { HandshakeClient, HandshakeServer } from '../../../src/auth/handshake/index.js';
import { SupervisedSignalSource } from '../../../src/datapath/signal-supervisor.js';
import {
  AuthType,
  buildTcpSyn,
  Datapath,
  wire,
  type AuthKey,
  type RingBufSignalSource,
} from '../../../src/datapath/index.js';
import type { TrustBundles } from '../../../src/spiffe/index.js';
import { silentLogger } from '../../../src/log.js';
import { isPrivileged } from '../../helpers/netns.js';
import { openDatapath, randomPinDir } from '../datapath/helpers.js';
import { StaticIdentity } from '../handshake/harness.js';
import { newPki, type TestPki } from '../handshake/pki.js';

const WEB = 'spiffe://demo.local/ns/a/sa/web';
const DB = 'spiffe://demo.local/ns/b/sa/db';
const IDS: Record<string, number> = { [WEB]: 10, [DB]: 20 };
const LOCAL = '10.1.0.1';
const REMOTE = '10.2.0.7';
/** Key of node-a's entry (web → db on node-b = node id 2 on node-a). */
const KEY_A: AuthKey = { localId: 10, remoteId: 20, remoteNode: 2, authType: AuthType.SpiffeMtls };
/** Key of node-b's entry (db → web on node-a = node id 1 on node-b). */
const KEY_B: AuthKey = { localId: 20, remoteId: 10, remoteNode: 1, authType: AuthType.SpiffeMtls };
const TC_ACT_STOLEN = 4;

function resolver(nodes: Record<string, number>, port: () => number): PairResolver {
  const byId = Object.fromEntries(Object.entries(IDS).map(([k, v]) => [v, k]));
  const byNode = Object.fromEntries(Object.entries(nodes).map(([k, v]) => [v, k]));
  return {
    spiffeIdOf: (n) => byId[n],
    numericIdFor: (s) => IDS[s]!,
    nodeNameOf: (n) => byNode[n],
    nodeIdOf: (name) => nodes[name],
    nodeEndpoint: () => ({ address: '127.0.0.1', port: port() }),
    pairRequired: () => true,
  };
}

describe.skipIf(!isPrivileged())('trust state with real kernel maps and real handshakes', () => {
  let pki: TestPki;
  let other: TestPki;
  let both: TrustBundles;
  let pinA: string;
  let pinB: string;
  let dpA: Datapath;
  let dpB: Datapath;
  let idA: StaticIdentity;
  let idB: StaticIdentity;
  let server: HandshakeServer;
  let port = 0;
  let managerA: AuthManager;
  let managerB: AuthManager;
  let signals: SupervisedSignalSource;
  let cacheA: AuthCache;
  const readers: RingBufSignalSource[] = [];
  const repairs: MirrorRepairReason[] = [];
  const auditA = new MemoryAuditSink();
  const auditB = new MemoryAuditSink();

  beforeAll(async () => {
    pki = await newPki('demo.local');
    other = await newPki('demo.local');
    both = new Map([
      ['demo.local', [...pki.bundles.get('demo.local')!, ...other.bundles.get('demo.local')!]],
    ]);
    idA = new StaticIdentity(both).add(await pki.issue(WEB));
    idB = new StaticIdentity(both).add(await pki.issue(DB));
    pinA = randomPinDir();
    pinB = randomPinDir();
    dpA = openDatapath(pinA, { signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false });
    dpB = openDatapath(pinB, { signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false });
    dpA.upsertIpcache({ cidr: `${LOCAL}/32`, identity: 10, nodeId: 0 });
    dpA.upsertIpcache({ cidr: '10.2.0.0/24', identity: 20, nodeId: 2 });
    dpA.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);

    cacheA = new AuthCache(dpA.auth, { onRepair: (r) => repairs.push(r) });
    const cacheB = new AuthCache(dpB.auth);
    const check = entryWriteCheck({
      holdsSvid: () => true,
      isLocalIdentity: () => true,
      isWorkloadOnNode: () => true,
      // The policy of this test: web and db authenticate each other, nothing else.
      requiresPair: (local, remote) => [local, remote].sort().join(' ') === [WEB, DB].sort().join(' '),
    });
    const options = {
      maxConcurrent: 2,
      queueSize: 16,
      retryBaseMs: 60_000,
      retryMaxMs: 60_000,
      reauthAt: 0.5,
    };
    managerB = new AuthManager({
      cache: cacheB,
      resolver: resolver({ 'node-a': 1 }, () => port),
      authenticator: { authenticate: () => Promise.reject(new Error('node-b does not dial')) },
      reporter: new AuthReporter({ audit: auditB, logger: silentLogger() }),
      logger: silentLogger(),
      writeCheck: check,
      options,
    });
    server = new HandshakeServer({
      identity: idB,
      nodeName: 'node-b',
      localIdentities: () => [DB],
      nodeForAddress: (a) => (a === '127.0.0.1' || a === '::ffff:127.0.0.1' ? 'node-a' : undefined),
      isWorkloadOnNode: () => true,
      maxEntryTtlMs: 3_600_000,
      onAuthenticated: (r) => {
        managerB.onServerAuthenticated(r);
      },
    });
    port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
    managerA = new AuthManager({
      cache: cacheA,
      resolver: resolver({ 'node-b': 2 }, () => port),
      authenticator: new HandshakeClient({
        identity: idA,
        nodeName: 'node-a',
        maxEntryTtlMs: 3_600_000,
        timeoutMs: 5000,
      }),
      reporter: new AuthReporter({ audit: auditA, logger: silentLogger() }),
      logger: silentLogger(),
      writeCheck: check,
      options,
    });
    managerA.noteTrustBundles(both);
    managerB.noteTrustBundles(both);
    signals = new SupervisedSignalSource({
      open: () => {
        const s = dpA.signals();
        readers.push(s);
        return s;
      },
      restartBaseMs: 50,
      restartMaxMs: 100,
    });
    managerA.start(signals);
  });

  afterAll(async () => {
    await managerA?.close();
    await managerB?.close();
    await server?.close();
    dpA?.close();
    dpB?.close();
    if (pinA) Datapath.removePins(pinA);
    if (pinB) Datapath.removePins(pinB);
  });

  /** A packet of the pair that the datapath drops and signals; waits until an entry is written. */
  async function dropAndAuthenticate(): Promise<void> {
    dpA.clearThrottle();
    expect(
      dpA.testRun(wire.PROGRAMS.tcEgress, { data: buildTcpSyn({ src: LOCAL, dst: REMOTE }) }).retval,
    ).toBe(TC_ACT_STOLEN);
    await expect
      .poll(() => dpA.auth.lookup(KEY_A) !== undefined && dpB.auth.lookup(KEY_B) !== undefined)
      .toBe(true);
    await managerA.idle();
  }

  it('a signal from the datapath authenticates the pair on both nodes', async () => {
    await expect.poll(() => signals.up).toBe(true);
    await dropAndAuthenticate();
    expect(server.stats().succeeded).toBe(1);
    // What the entry relied on is recorded on both sides.
    expect(cacheA.get(KEY_A)?.trust?.chains).toHaveLength(2);
  });

  it('an entry deleted from the kernel map with bpftool is authenticated again on the next signal', async () => {
    const hex = [...wire.authKey.encode(KEY_A)].map((b) => b.toString(16).padStart(2, '0'));
    execFileSync('bpftool', [
      'map',
      'delete',
      'pinned',
      `${pinA}/${wire.MAPS.auth.name}`,
      'key',
      'hex',
      ...hex,
    ]);
    expect(dpA.auth.lookup(KEY_A)).toBeUndefined();
    await dropAndAuthenticate();
    expect(server.stats().succeeded).toBe(2);
    expect(repairs).toEqual(['kernel-missing']);
    repairs.length = 0;
  });

  it('the signal reader is restarted after it stopped, and is reported down meanwhile', async () => {
    const before = readers.length;
    readers.at(-1)!.close(); // the reader ends without the supervisor asking it to
    await expect.poll(() => readers.length).toBe(before + 1);
    await expect.poll(() => signals.health().ready).toBe(true);
    expect(signals.restarts).toBe(1);
    // The new reader delivers: a drop after the entry was removed authenticates the pair again.
    dpA.auth.delete(KEY_A);
    await dropAndAuthenticate();
    expect(server.stats().succeeded).toBe(3);
  });

  it('a bundle change that removes the CA deletes the entries at once on both nodes', async () => {
    expect(dpA.auth.lookup(KEY_A)).toBeDefined();
    expect(dpB.auth.lookup(KEY_B)).toBeDefined();
    idA.trust = other.bundles;
    idB.trust = other.bundles;
    const a = managerA.onTrustBundlesChanged(other.bundles);
    const b = managerB.onTrustBundlesChanged(other.bundles);
    expect(a.revoked).toBe(1);
    expect(b.revoked).toBe(1);
    // Gone from both kernels before any re-authentication could run.
    expect(dpA.auth.lookup(KEY_A)).toBeUndefined();
    expect(dpB.auth.lookup(KEY_B)).toBeUndefined();
    await managerA.idle();
    await managerB.idle();
    // Re-authentication under the new bundle fails (both SVIDs are from the removed CA): nothing returns.
    expect(dpA.auth.lookup(KEY_A)).toBeUndefined();
    expect(dpB.auth.lookup(KEY_B)).toBeUndefined();
    for (const audit of [auditA, auditB]) {
      expect(audit.events.filter((e) => e.type === 'entry-removed').map((e) => e.reason)).toEqual([
        'bundle-revoked',
      ]);
    }
    expect(
      auditA.events.some((e) => e.type === 'handshake-failed' && e.details?.['why'] === 'reauth-bundle'),
    ).toBe(true);
  });
});
