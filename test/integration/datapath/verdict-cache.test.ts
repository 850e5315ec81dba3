/**
 * The per-CPU verdict cache (ma_flow_cache) against the real kernel: what a slot holds after an
 * authenticated packet, that a slot is honoured only under the generation it was written with and
 * only until the entry's expiry, and that every Datapath write or delete ends with a new generation.
 *
 * BPF_PROG_TEST_RUN runs on whichever CPU the test happens to be on, so the tests copy a filled slot
 * to every CPU's copy before changing a map: the next packet then meets the cached verdict wherever
 * it runs, and a change that did not invalidate it would pass the packet.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuthType,
  Datapath,
  VERDICT_CACHE_SUPPORTED,
  addressBytes,
  bootNowNs,
  buildTcpSyn,
  numPossibleCpus,
  wire,
  type VerdictCounters,
} from '../../../src/datapath/index.js';
import { c, lib } from '../../../src/datapath/libbpf.js';
import { isPrivileged } from '../../helpers/netns.js';
import { openDatapath, randomPinDir } from './helpers.js';

const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;
const TC_ACT_STOLEN = 4;
const CG_ALLOW = 1;

const LOCAL = '10.1.0.1';
const REMOTE = '10.2.0.7';
const KEY = { localId: 10, remoteId: 20, remoteNode: 2, authType: AuthType.SpiffeMtls };
const WG_IFINDEX = 7;

const zero = (): VerdictCounters =>
  Object.fromEntries(wire.VERDICT_NAMES.map((n) => [n, 0n])) as VerdictCounters;

/** IPv4-mapped 16-byte form, as the programs key the cache. */
const mapped = (ip: string): Buffer => {
  const a = addressBytes(ip);
  return a.length === 16 ? a : Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), a]);
};

describe.skipIf(!isPrivileged() || !VERDICT_CACHE_SUPPORTED)('verdict cache (BPF_PROG_TEST_RUN)', () => {
  let pinDir: string;
  let dp: Datapath;
  let cacheFd = -1;
  let authFd = -1;

  beforeAll(() => {
    pinDir = randomPinDir();
    dp = openDatapath(pinDir, {
      signalThrottleMs: 600_000,
      wireguardIfindex: WG_IFINDEX,
      strictWireguard: false,
    });
    cacheFd = lib().bpf_obj_get(`${pinDir}/${wire.MAPS.flowCache.name}`);
    authFd = lib().bpf_obj_get(`${pinDir}/${wire.MAPS.auth.name}`);
    expect(cacheFd).toBeGreaterThanOrEqual(0);
    expect(authFd).toBeGreaterThanOrEqual(0);
  });

  afterAll(() => {
    if (cacheFd >= 0) c().close(cacheFd);
    if (authFd >= 0) c().close(authFd);
    dp?.close();
    if (pinDir) Datapath.removePins(pinDir);
  });

  beforeEach(() => {
    dp.setSettings({ signalThrottleMs: 600_000, wireguardIfindex: WG_IFINDEX, strictWireguard: false });
    dp.syncIpcache([
      { cidr: `${LOCAL}/32`, identity: 10, nodeId: 0 },
      { cidr: '10.2.0.0/24', identity: 20, nodeId: 2 },
      { cidr: `${REMOTE}/32`, identity: 20, nodeId: 2 },
    ]);
    dp.syncPolicy([{ localId: 10, remoteId: 20, authType: AuthType.SpiffeMtls }]);
    for (const [k] of [...dp.auth.entries()]) dp.auth.delete(k);
    dp.auth.update(KEY, { expiresAtMs: Date.now() + 600_000 });
    dp.clearThrottle();
    dp.resetCounters();
  });

  type Program = keyof typeof wire.FLOW_CACHE_PROGRAMS;
  /** The flows of the test packets as the programs key them. */
  const EGRESS_FLOW: wire.WireFlowKey = { src: mapped(LOCAL), dst: mapped(REMOTE), ifindex: 0 };
  const INGRESS_FLOW: wire.WireFlowKey = { src: mapped(REMOTE), dst: mapped(LOCAL), ifindex: 3 };

  /** Copies the flow's slot, filled on one CPU, to every CPU (optionally changed). */
  function spread(
    program: Program,
    flow: wire.WireFlowKey,
    change: Partial<wire.WireFlowCacheSlot> = {},
  ): wire.WireFlowCacheSlot {
    const gen = dp.generation();
    const filled = dp.flowCache(program, flow).filter((s) => s.generation === gen && s.seq % 2n === 0n);
    expect(filled.length, 'slots written under the current generation').toBeGreaterThanOrEqual(1);
    const slot = { ...filled[0]!, ...change };
    put(program, flow, slot);
    return slot;
  }

  /** Writes `slot` as every CPU's copy of the slot that `flow` maps to. */
  function put(program: Program, flow: wire.WireFlowKey, slot: wire.WireFlowCacheSlot): void {
    const value = Buffer.concat(
      Array.from({ length: numPossibleCpus() }, () => wire.flowCacheSlot.encode(slot)),
    );
    const key = wire.u32Key.encode(wire.flowCacheIndex(program, flow));
    expect(lib().bpf_map_update_elem(cacheFd, key, value, 0n)).toBe(0);
  }

  /** Deletes the auth entry behind the Datapath's back: no new generation. */
  function deleteAuthRaw(): void {
    expect(lib().bpf_map_delete_elem(authFd, wire.authKey.encode(KEY))).toBe(0);
  }

  const run = (program: string, src: string, dst: string, ingressIfindex?: number): number =>
    dp.testRun(program, {
      data: buildTcpSyn({ src, dst }),
      ...(ingressIfindex === undefined ? {} : { ingressIfindex }),
    }).retval;

  it('keeps the flow, the entry expiry and the generation of an authenticated packet', () => {
    expect(run(wire.PROGRAMS.tcEgress, LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);
    // found where the user-space mirror of the slot hash says
    const filled = dp.flowCache('tcEgress', EGRESS_FLOW).filter((s) => s.generation === dp.generation());
    expect(filled).toHaveLength(1);
    const s = filled[0]!;
    expect(s.generation).toBe(dp.generation());
    expect(s.expiryBootNs).toBe(dp.auth.lookupBootNs(KEY));
    expect(s.seq % 2n).toBe(0n);
    expect(s.key).toEqual(EGRESS_FLOW);
    // ingress semantics key the interface too; other programs have their own slot
    expect(run(wire.PROGRAMS.tcIngress, REMOTE, LOCAL, 3)).toBe(TC_ACT_UNSPEC);
    const ingress = dp.flowCache('tcIngress', INGRESS_FLOW).filter((x) => x.generation === dp.generation());
    expect(ingress.map((x) => x.key)).toEqual([INGRESS_FLOW]);
    expect(dp.flowCache('cgroupEgress', EGRESS_FLOW).every((x) => x.generation === 0n)).toBe(true);
    // distinct flows spread over the slots of a program
    const slots = new Set(
      Array.from({ length: 64 }, (_x, i) =>
        wire.flowCacheIndex('tcEgress', { ...EGRESS_FLOW, dst: mapped(`10.2.0.${i + 1}`) }),
      ),
    );
    expect(slots.size).toBeGreaterThan(48);
    expect([...slots].every((i) => i >= 0 && i < 1 << wire.FLOW_CACHE_BITS)).toBe(true);
  });

  it('serves a cached verdict while the generation stands, and not after a new one', () => {
    expect(run(wire.PROGRAMS.tcEgress, LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);
    spread('tcEgress', EGRESS_FLOW);
    deleteAuthRaw();
    dp.resetCounters();
    // the cache answers for the deleted entry: this is what the generation is for
    expect(run(wire.PROGRAMS.tcEgress, LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toEqual({ ...zero(), pass_authenticated: 1n });
    const before = dp.generation();
    dp.bumpGeneration();
    expect(dp.generation()).not.toBe(before);
    expect(dp.generation()).not.toBe(0n);
    expect(run(wire.PROGRAMS.tcEgress, LOCAL, REMOTE)).toBe(TC_ACT_STOLEN);
    expect(dp.counters()).toEqual({
      ...zero(),
      pass_authenticated: 1n,
      drop_auth_missing: 1n,
      signal_sent: 1n,
    });
  });

  it('never hits a slot that is being written (odd seq) or of another flow', () => {
    expect(run(wire.PROGRAMS.cgroupEgress, LOCAL, REMOTE)).toBe(CG_ALLOW);
    const s = spread('cgroupEgress', EGRESS_FLOW);
    spread('cgroupEgress', EGRESS_FLOW, { seq: s.seq + 1n });
    deleteAuthRaw();
    dp.resetCounters();
    expect(run(wire.PROGRAMS.cgroupEgress, LOCAL, REMOTE)).toBe(0);
    expect(dp.counters()).toEqual({ ...zero(), drop_auth_missing: 1n, signal_sent: 1n });
    // a live slot holding the same pair's reverse flow (where this flow's slot is) is another key
    dp.auth.update(KEY, { expiresAtMs: Date.now() + 600_000 });
    put('cgroupEgress', EGRESS_FLOW, {
      seq: 0n,
      generation: dp.generation(),
      expiryBootNs: bootNowNs() + 600_000_000_000n,
      key: { ...EGRESS_FLOW, src: EGRESS_FLOW.dst, dst: EGRESS_FLOW.src },
    });
    deleteAuthRaw();
    dp.resetCounters();
    expect(run(wire.PROGRAMS.cgroupEgress, LOCAL, REMOTE)).toBe(0);
    expect(dp.counters()).toEqual({ ...zero(), drop_auth_missing: 1n, signal_throttled: 1n });
    // and the same slot with the flow's own key is served
    put('cgroupEgress', EGRESS_FLOW, {
      seq: 0n,
      generation: dp.generation(),
      expiryBootNs: bootNowNs() + 600_000_000_000n,
      key: EGRESS_FLOW,
    });
    expect(run(wire.PROGRAMS.cgroupEgress, LOCAL, REMOTE)).toBe(CG_ALLOW);
  });

  it('drops on a cache hit once the entry has expired, with no map write in between', async () => {
    const expiry = bootNowNs() + 30_000_000n;
    dp.auth.updateBootNs(KEY, expiry);
    expect(run(wire.PROGRAMS.tcEgress, LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);
    const slot = spread('tcEgress', EGRESS_FLOW);
    expect(slot.expiryBootNs).toBe(expiry);
    const gen = dp.generation();
    while (bootNowNs() <= expiry) await new Promise((r) => setTimeout(r, 5));
    dp.resetCounters();
    expect(run(wire.PROGRAMS.tcEgress, LOCAL, REMOTE)).toBe(TC_ACT_STOLEN);
    expect(dp.counters()).toEqual({ ...zero(), drop_auth_expired: 1n, signal_sent: 1n });
    expect(dp.generation()).toBe(gen);
  });

  // Each change makes the flow's verdict something else; the cached one must not be served.
  const changes: Array<[string, () => void, Partial<VerdictCounters>]> = [
    ['auth.delete', () => dp.auth.delete(KEY), { drop_auth_missing: 1n, signal_sent: 1n }],
    [
      'auth.updateBootNs (expired)',
      () => dp.auth.updateBootNs(KEY, 1n),
      { drop_auth_expired: 1n, signal_sent: 1n },
    ],
    [
      'auth.update (expired)',
      () => dp.auth.update(KEY, { expiresAtMs: Date.now() - 1000 }),
      { drop_auth_expired: 1n, signal_sent: 1n },
    ],
    [
      'setPolicy',
      () => dp.setPolicy({ localId: 10, remoteId: 20 }, 2),
      { drop_auth_missing: 1n, signal_sent: 1n },
    ],
    ['deletePolicy', () => dp.deletePolicy({ localId: 10, remoteId: 20 }), { pass_no_policy: 1n }],
    [
      'syncPolicy',
      () => dp.syncPolicy([{ localId: 10, remoteId: 20, authType: 2 }]),
      { drop_auth_missing: 1n, signal_sent: 1n },
    ],
    [
      'upsertIpcache',
      () => dp.upsertIpcache({ cidr: `${REMOTE}/32`, identity: 30, nodeId: 3 }),
      { pass_no_policy: 1n },
    ],
    ['deleteIpcache', () => dp.deleteIpcache(`${LOCAL}/32`), { pass_unknown_identity: 1n }],
    [
      'syncIpcache',
      () => dp.syncIpcache([{ cidr: `${LOCAL}/32`, identity: 10, nodeId: 0 }]),
      { pass_unknown_identity: 1n },
    ],
    [
      'applyDelta',
      () => dp.applyDelta({ ipcacheUpsert: [{ cidr: `${REMOTE}/32`, identity: 20, nodeId: 3 }] }),
      { drop_auth_missing: 1n, signal_sent: 1n },
    ],
    [
      'reconcileHosts',
      () => {
        // a host entry only in the trie (written behind the Datapath's back) replaces the flow's
        // resolution once the host map is rebuilt from it
        const ipc = lib().bpf_obj_get(`${pinDir}/${wire.MAPS.ipcache.name}`);
        try {
          const v = wire.ipcacheValue.encode({ identity: 20, nodeId: 3 });
          expect(lib().bpf_map_update_elem(ipc, wire.ipcacheKey.encode(`${REMOTE}/32`), v, 0n)).toBe(0);
        } finally {
          c().close(ipc);
        }
        dp.reconcileHosts();
      },
      { drop_auth_missing: 1n, signal_sent: 1n },
    ],
  ];

  it.each(changes)(
    '%s ends with a new generation: the next packet gets the new verdict',
    (_name, change, want) => {
      expect(run(wire.PROGRAMS.tcEgress, LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);
      spread('tcEgress', EGRESS_FLOW);
      const gen = dp.generation();
      change();
      expect(dp.generation()).not.toBe(gen);
      dp.resetCounters();
      run(wire.PROGRAMS.tcEgress, LOCAL, REMOTE);
      expect(dp.counters()).toEqual({ ...zero(), ...want });
    },
  );

  it('setSettings ends with a new generation (strict WireGuard mode applies to a cached flow)', () => {
    expect(run(wire.PROGRAMS.tcIngress, REMOTE, LOCAL, 3)).toBe(TC_ACT_UNSPEC);
    spread('tcIngress', INGRESS_FLOW);
    const gen = dp.generation();
    dp.setSettings({ signalThrottleMs: 600_000, wireguardIfindex: WG_IFINDEX, strictWireguard: true });
    expect(dp.generation()).not.toBe(gen);
    dp.resetCounters();
    expect(run(wire.PROGRAMS.tcIngress, REMOTE, LOCAL, 3)).toBe(TC_ACT_SHOT);
    expect(run(wire.PROGRAMS.tcIngress, REMOTE, LOCAL, WG_IFINDEX)).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toEqual({ ...zero(), drop_not_via_wireguard: 1n, pass_authenticated: 1n });
  });
});
