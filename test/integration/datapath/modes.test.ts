/**
 * Policy modes, unresolved pod addresses and entry-by-entry map changes against the real kernel
 * (BPF_PROG_TEST_RUN): permissive pairs pass counted and signalled, addresses inside a pod CIDR
 * without a workload entry fail closed for local identities with a rule, and applyDelta touches only
 * the entries it lists.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuthType,
  Datapath,
  IDENTITY_UNRESOLVED,
  buildTcpSyn,
  diffMaps,
  wire,
  type AuthSignal,
  type VerdictCounters,
} from '../../../src/datapath/index.js';
import { isPrivileged } from '../../helpers/netns.js';
import { openDatapath, randomPinDir } from './helpers.js';

const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;
const TC_ACT_STOLEN = 4;
const CG_ALLOW = 1;
const CG_DROP = 0;

const LOCAL = '10.1.0.1'; // identity 10 on this node
const REMOTE = '10.2.0.7'; // identity 20 on node 2
const NEW_POD = '10.2.0.8'; // inside node 2's pod CIDR 10.2.0.0/24, not in the ipcache yet
const OUTSIDE = '192.0.2.1'; // in no pod CIDR
const LOCAL_NEW = '10.1.0.9'; // inside this node's pod CIDR, not known yet
const NEW_POD6 = 'fd00:2::99';
const LOCAL6 = 'fd00:1::1';

const zero = (): VerdictCounters =>
  Object.fromEntries(wire.VERDICT_NAMES.map((n) => [n, 0n])) as VerdictCounters;

async function collectSignals(
  dp: Datapath,
  n: number,
  during: () => void | Promise<void>,
  timeoutMs = 2000,
): Promise<AuthSignal[]> {
  const src = dp.signals();
  const got: AuthSignal[] = [];
  const done = src.run((s) => {
    got.push(s);
    if (got.length >= n) src.close();
  });
  await new Promise((r) => setTimeout(r, 20));
  await during();
  const t = setTimeout(() => src.close(), timeoutMs);
  await done;
  clearTimeout(t);
  return got;
}

describe.skipIf(!isPrivileged())('datapath policy modes and unresolved pod addresses', () => {
  let pinDir: string;
  let dp: Datapath;
  const syn = (src: string, dst: string): Buffer => buildTcpSyn({ src, dst });

  beforeAll(() => {
    pinDir = randomPinDir();
    dp = openDatapath(pinDir, { signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false });
  });

  afterAll(() => {
    dp?.close();
    if (pinDir) Datapath.removePins(pinDir);
  });

  beforeEach(async () => {
    // Drain records earlier tests left in the ring buffer.
    await collectSignals(dp, Number.MAX_SAFE_INTEGER, () => undefined, 50);
    dp.syncPolicy([]);
    dp.syncIpcache([
      { cidr: `${LOCAL}/32`, identity: 10, nodeId: 0 },
      { cidr: `${LOCAL6}/128`, identity: 10, nodeId: 0 },
      { cidr: `${REMOTE}/32`, identity: 20, nodeId: 2 },
      // pod CIDRs of both nodes, marked unresolved
      { cidr: '10.1.0.0/24', identity: IDENTITY_UNRESOLVED, nodeId: 0 },
      { cidr: '10.2.0.0/24', identity: IDENTITY_UNRESOLVED, nodeId: 2 },
      { cidr: 'fd00:2::/64', identity: IDENTITY_UNRESOLVED, nodeId: 2 },
    ]);
    for (const [k] of [...dp.auth.entries()]) dp.auth.delete(k);
    dp.clearThrottle();
    dp.resetCounters();
  });

  it('permissive: an unauthenticated pair passes, counted as pass_permissive, and is signalled', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls, 'permissive');
    expect(dp.listPolicy()).toEqual([{ localId: 10, remoteId: 20, authType: 1, mode: 'permissive' }]);
    const signals = await collectSignals(dp, 1, () => {
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
      expect(dp.testRun(wire.PROGRAMS.tcIngress, { data: syn(REMOTE, LOCAL) }).retval).toBe(TC_ACT_UNSPEC);
      expect(dp.testRun(wire.PROGRAMS.cgroupEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(CG_ALLOW);
    });
    expect(signals).toHaveLength(1);
    expect(signals[0]).toMatchObject({
      localId: 10,
      remoteId: 20,
      remoteNode: 2,
      permissive: true,
      unresolved: false,
    });
    expect(dp.counters()).toEqual({ ...zero(), pass_permissive: 3n, signal_sent: 1n, signal_throttled: 2n });

    // Once authenticated it counts as authenticated, not permissive.
    dp.auth.update(
      { localId: 10, remoteId: 20, remoteNode: 2, authType: 1 },
      { expiresAtMs: Date.now() + 60_000 },
    );
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.counters().pass_authenticated).toBe(1n);
  });

  it('switching a pair from permissive to enforce drops it again; deleting the entry stops enforcement', () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls, 'permissive');
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls, 'enforce');
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_STOLEN);
    dp.deletePolicy({ localId: 10, remoteId: 20 });
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toMatchObject({ pass_permissive: 1n, drop_auth_missing: 1n, pass_no_policy: 1n });
  });

  it('drops an address in a pod CIDR that is not in the ipcache yet, and signals it as unresolved', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    dp.setPolicy({ localId: 10, remoteId: IDENTITY_UNRESOLVED }, AuthType.SpiffeMtls);
    const signals = await collectSignals(dp, 1, () => {
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, NEW_POD) }).retval).toBe(TC_ACT_STOLEN);
      expect(dp.testRun(wire.PROGRAMS.tcIngress, { data: syn(NEW_POD, LOCAL) }).retval).toBe(TC_ACT_SHOT);
      expect(dp.testRun(wire.PROGRAMS.cgroupIngress, { data: syn(NEW_POD, LOCAL) }).retval).toBe(CG_DROP);
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL6, NEW_POD6) }).retval).toBe(TC_ACT_STOLEN);
    });
    expect(signals[0]).toMatchObject({
      localId: 10,
      remoteId: IDENTITY_UNRESOLVED,
      remoteNode: 2,
      unresolved: true,
      permissive: false,
    });
    const c = dp.counters();
    expect(c.drop_unresolved_pod_ip).toBe(4n);
    expect(c.drop_auth_missing).toBe(0n);
    // outside every pod CIDR: still unknown identity, passes as before
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, OUTSIDE) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.counters().pass_unknown_identity).toBe(1n);

    // The pod becomes known (identity 20): the pair now needs an entry like any other.
    dp.applyDelta({ ipcacheUpsert: [{ cidr: `${NEW_POD}/32`, identity: 20, nodeId: 2 }] });
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, NEW_POD) }).retval).toBe(TC_ACT_STOLEN);
    expect(dp.counters().drop_auth_missing).toBe(1n);
    dp.auth.update(
      { localId: 10, remoteId: 20, remoteNode: 2, authType: 1 },
      { expiresAtMs: Date.now() + 60_000 },
    );
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, NEW_POD) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.counters().pass_authenticated).toBe(1n);
  });

  it('the wildcard entry covers unresolved addresses too; local identities without a rule pass', () => {
    dp.setPolicy({ localId: 10, remoteId: 0 }, AuthType.SpiffeMtls);
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, NEW_POD) }).retval).toBe(TC_ACT_STOLEN);
    dp.syncPolicy([]);
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, NEW_POD) }).retval).toBe(TC_ACT_UNSPEC);
    // an unknown pod of this node as the local side has no policy: passes as unknown identity
    dp.setPolicy({ localId: 10, remoteId: IDENTITY_UNRESOLVED }, AuthType.SpiffeMtls);
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL_NEW, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toMatchObject({
      drop_unresolved_pod_ip: 1n,
      pass_no_policy: 1n,
      pass_unknown_identity: 1n,
    });
  });

  it('a permissive rule lets unresolved addresses pass, counted as permissive', async () => {
    dp.setPolicy({ localId: 10, remoteId: IDENTITY_UNRESOLVED }, AuthType.SpiffeMtls, 'permissive');
    const signals = await collectSignals(dp, 1, () => {
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, NEW_POD) }).retval).toBe(TC_ACT_UNSPEC);
    });
    expect(signals[0]).toMatchObject({ unresolved: true, permissive: true });
    expect(dp.counters()).toEqual({ ...zero(), pass_permissive: 1n, signal_sent: 1n });
  });

  it('applyDelta writes only the listed entries, in an order without a fail-open window', () => {
    const fullBefore = dp.fullSyncs;
    const prev = {
      ipcache: dp.listIpcache(),
      policy: [{ localId: 10, remoteId: 20, authType: 1 }],
    };
    dp.applyDelta({ policyUpsert: prev.policy });
    // A new pod with a new identity 21 at NEW_POD, and REMOTE's pod deleted.
    const next = {
      ipcache: [
        ...prev.ipcache.filter((e) => e.cidr !== `${REMOTE}/32`),
        { cidr: `${NEW_POD}/32`, identity: 21, nodeId: 2 },
      ],
      policy: [
        { localId: 10, remoteId: 21, authType: 1 },
        { localId: 10, remoteId: IDENTITY_UNRESOLVED, authType: 1 },
      ],
    };
    const delta = diffMaps(prev, next);
    expect(delta).toEqual({
      ipcacheUpsert: [{ cidr: `${NEW_POD}/32`, identity: 21, nodeId: 2 }],
      ipcacheRemove: [`${REMOTE}/32`],
      policyUpsert: [
        { localId: 10, remoteId: 21, authType: 1 },
        { localId: 10, remoteId: IDENTITY_UNRESOLVED, authType: 1 },
      ],
      policyRemove: [{ localId: 10, remoteId: 20 }],
    });
    const r = dp.applyDelta(delta);
    expect(r).toEqual({
      ipcache: { added: 0, updated: 1, removed: 1 },
      policy: { added: 0, updated: 2, removed: 1 },
    });
    const canon = (xs: Array<{ cidr: string }>) => [...xs].sort((a, b) => a.cidr.localeCompare(b.cidr));
    expect(canon(dp.listIpcache())).toEqual(canon(next.ipcache));
    expect(dp.listPolicy().sort((a, b) => a.remoteId - b.remoteId)).toEqual(
      next.policy.map((p) => ({ ...p, mode: 'enforce' })),
    );
    // the deleted pod's address now falls back to its node's pod CIDR: unresolved, dropped
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_STOLEN);
    expect(dp.counters().drop_unresolved_pod_ip).toBe(1n);
    expect(dp.fullSyncs).toBe(fullBefore);
  });

  it('a prefix both removed and upserted in one delta is replaced in place', () => {
    dp.applyDelta({
      ipcacheRemove: [`${REMOTE}/32`],
      ipcacheUpsert: [{ cidr: `${REMOTE}/32`, identity: 22, nodeId: 2 }],
    });
    expect(dp.listIpcache().find((e) => e.cidr === `${REMOTE}/32`)).toEqual({
      cidr: `${REMOTE}/32`,
      identity: 22,
      nodeId: 2,
    });
  });
});
