/**
 * The datapath against the real kernel: crafted packets pushed through the loaded programs with
 * BPF_PROG_TEST_RUN, signals read through the async ring-buffer reader, counters, pin reuse.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClosedError } from '../../../src/errors.js';
import {
  AuthType,
  BpfObject,
  Datapath,
  VerifierError,
  RingBufReader,
  SizeMismatchError,
  bootNowNs,
  buildArp,
  buildMplsTcpSyn,
  buildTcpSyn,
  kernelHz,
  wire,
  type AuthSignal,
  type VerdictCounters,
} from '../../../src/datapath/index.js';
import { isPrivileged } from '../../helpers/netns.js';
import { OBJECT_PATH, openDatapath, openFds, randomPinDir } from './helpers.js';

const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;
/** The egress-semantics tc program drops with STOLEN (see bpf/meshauth.bpf.c). */
const TC_ACT_STOLEN = 4;
const CG_ALLOW = 1;
const CG_DROP = 0;

const LOCAL = '10.1.0.1';
const REMOTE = '10.2.0.7'; // in 10.2.0.0/24: identity 20 on node 2
const REMOTE3 = '10.3.0.5'; // identity 30 on node 3
const UNKNOWN = '192.0.2.1';
const LOCAL6 = 'fd00:1::1';
const REMOTE6 = 'fd00:2::42';

const KEY_10_20 = { localId: 10, remoteId: 20, remoteNode: 2, authType: AuthType.SpiffeMtls };

const zero = (): VerdictCounters =>
  Object.fromEntries(wire.VERDICT_NAMES.map((n) => [n, 0n])) as VerdictCounters;

/** Collects signals through a SignalSource until `n` arrived (or the timeout). */
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
  await during();
  const t = setTimeout(() => src.close(), timeoutMs);
  await done;
  clearTimeout(t);
  return got;
}

describe.skipIf(!isPrivileged())('datapath (BPF_PROG_TEST_RUN)', () => {
  let pinDir: string;
  let dp: Datapath;
  let fdsBefore: number;

  const syn = (src: string, dst: string): Buffer => buildTcpSyn({ src, dst });

  beforeAll(() => {
    fdsBefore = openFds();
    pinDir = randomPinDir();
    dp = openDatapath(pinDir, { signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false });
    dp.upsertIpcache({ cidr: `${LOCAL}/32`, identity: 10, nodeId: 0 });
    dp.upsertIpcache({ cidr: '10.2.0.0/24', identity: 20, nodeId: 2 });
    dp.upsertIpcache({ cidr: `${REMOTE3}/32`, identity: 30, nodeId: 3 });
    dp.upsertIpcache({ cidr: `${LOCAL6}/128`, identity: 10, nodeId: 0 });
    dp.upsertIpcache({ cidr: 'fd00:2::/64', identity: 20, nodeId: 2 });
  });

  afterAll(() => {
    dp?.close();
    if (pinDir) Datapath.removePins(pinDir);
    expect(openFds()).toBe(fdsBefore);
    expect(existsSync(pinDir)).toBe(false);
  });

  beforeEach(() => {
    dp.syncPolicy([]);
    for (const [k] of [...dp.auth.entries()]) dp.auth.delete(k);
    dp.clearThrottle();
    dp.resetCounters();
    dp.setSettings({ signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false });
  });

  it('loads the four programs and pins every map', () => {
    const obj = BpfObject.load(OBJECT_PATH); // unpinned: private maps
    try {
      expect(obj.programNames().sort()).toEqual(Object.values(wire.PROGRAMS).sort());
    } finally {
      obj.close();
    }
    for (const m of Object.values(wire.MAPS)) expect(existsSync(`${pinDir}/${m.name}`)).toBe(true);
  });

  it('passes non-IP packets', () => {
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: buildArp() }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toEqual({ ...zero(), pass_not_ip: 1n });
  });

  it('passes pairs with an unknown side, and remote-to-remote traffic', () => {
    dp.setPolicy({ localId: 10, remoteId: 0 }, AuthType.SpiffeMtls);
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, UNKNOWN) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(UNKNOWN, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
    // egress semantics with a "local" address on another node
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(REMOTE3, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toEqual({ ...zero(), pass_unknown_identity: 3n });
  });

  it('passes a pair that no policy covers, with no signal', async () => {
    const signals = await collectSignals(
      dp,
      1,
      () => {
        expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
      },
      300,
    );
    expect(signals).toEqual([]);
    expect(dp.counters()).toEqual({ ...zero(), pass_no_policy: 1n });
  });

  it('drops a required pair without entry and signals it once through the async reader', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const before = bootNowNs();
    let after = 0n;
    // The reader is already waiting on the worker thread when the packet arrives.
    const signals = await collectSignals(dp, 1, async () => {
      await new Promise((r) => setTimeout(r, 50));
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_STOLEN);
      after = bootNowNs();
    });
    expect(signals).toHaveLength(1);
    const s = signals[0]!;
    expect(s).toMatchObject({ localId: 10, remoteId: 20, remoteNode: 2, authType: 1, direction: 'egress' });
    expect(s.bootNs).toBeGreaterThanOrEqual(before);
    expect(s.bootNs).toBeLessThanOrEqual(after);
    expect(dp.counters()).toEqual({ ...zero(), drop_auth_missing: 1n, signal_sent: 1n });
  });

  it('passes a pair with a live entry (tc and cgroup programs)', () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    dp.auth.update(KEY_10_20, { expiresAtMs: Date.now() + 60_000 });
    expect(dp.auth.lookup(KEY_10_20)?.expiresAtMs).toBeGreaterThan(Date.now() + 59_000);
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.testRun(wire.PROGRAMS.tcIngress, { data: syn(REMOTE, LOCAL) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.testRun(wire.PROGRAMS.cgroupEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(CG_ALLOW);
    expect(dp.testRun(wire.PROGRAMS.cgroupIngress, { data: syn(REMOTE, LOCAL) }).retval).toBe(CG_ALLOW);
    expect(dp.counters()).toEqual({ ...zero(), pass_authenticated: 4n });
  });

  it('drops a pair whose entry has expired', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    dp.auth.updateBootNs(KEY_10_20, bootNowNs() - 1n);
    const signals = await collectSignals(dp, 1, () => {
      expect(dp.testRun(wire.PROGRAMS.cgroupEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(CG_DROP);
    });
    expect(signals.map((s) => s.remoteId)).toEqual([20]);
    expect(dp.counters()).toEqual({ ...zero(), drop_auth_expired: 1n, signal_sent: 1n });
  });

  it('uses the wildcard policy for any remote, and an exact pair overrides it', async () => {
    dp.setPolicy({ localId: 10, remoteId: 0 }, AuthType.SpiffeMtls);
    dp.setPolicy({ localId: 10, remoteId: 20 }, 0); // exact exception: no auth for 10 -> 20
    const signals = await collectSignals(dp, 1, () => {
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE3) }).retval).toBe(TC_ACT_STOLEN);
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) }).retval).toBe(TC_ACT_UNSPEC);
    });
    expect(signals).toHaveLength(1);
    expect(signals[0]).toMatchObject({ localId: 10, remoteId: 30, remoteNode: 3, authType: 1 });
    expect(dp.counters()).toEqual({ ...zero(), drop_auth_missing: 1n, signal_sent: 1n, pass_no_policy: 1n });
  });

  it('applies ingress semantics: local is the destination, direction ingress', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const signals = await collectSignals(dp, 1, () => {
      expect(dp.testRun(wire.PROGRAMS.tcIngress, { data: syn(REMOTE, LOCAL) }).retval).toBe(TC_ACT_SHOT);
    });
    expect(signals[0]).toMatchObject({ localId: 10, remoteId: 20, remoteNode: 2, direction: 'ingress' });
  });

  it('carries the bytes of a dropped SYN from the IP header on (tc, egress semantics, IPv4 and IPv6)', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const v4 = syn(LOCAL, REMOTE);
    const v6 = syn(LOCAL6, REMOTE6);
    const signals = await collectSignals(dp, 2, () => {
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: v4 }).retval).toBe(TC_ACT_STOLEN);
      dp.clearThrottle(); // same pair
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: v6 }).retval).toBe(TC_ACT_STOLEN);
    });
    expect(signals).toHaveLength(2);
    // the Ethernet header (14 bytes) is not part of what is captured
    expect(signals[0]!.syn).toEqual(v4.subarray(14));
    expect(signals[0]!.syn).toHaveLength(40);
    expect(signals[1]!.syn).toEqual(v6.subarray(14));
    expect(signals[1]!.syn).toHaveLength(60);
  });

  it('carries no packet bytes for ingress semantics, cgroup programs or a SYN with ACK or payload', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const synAck = syn(LOCAL, REMOTE);
    synAck[14 + 20 + 13] = 0x12; // SYN+ACK
    const withPayload = Buffer.concat([syn(LOCAL6, REMOTE6), Buffer.from('data')]);
    withPayload.writeUInt16BE(24, 14 + 4); // IPv6 payload length: TCP header + 4 bytes
    const signals = await collectSignals(dp, 4, () => {
      dp.testRun(wire.PROGRAMS.tcIngress, { data: syn(REMOTE, LOCAL) });
      dp.clearThrottle();
      dp.testRun(wire.PROGRAMS.cgroupEgress, { data: syn(LOCAL, REMOTE) });
      dp.clearThrottle();
      dp.testRun(wire.PROGRAMS.tcEgress, { data: synAck });
      dp.clearThrottle();
      dp.testRun(wire.PROGRAMS.tcEgress, { data: withPayload });
    });
    expect(signals).toHaveLength(4);
    expect(signals.map((s) => s.syn)).toEqual([undefined, undefined, undefined, undefined]);
  });

  it('throttles signals per pair within the window and signals again after it', async () => {
    dp.setSettings({ signalThrottleMs: 300, wireguardIfindex: 0, strictWireguard: false });
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const signals = await collectSignals(dp, 2, async () => {
      dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) });
      dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) });
      expect(dp.counters()).toMatchObject({ signal_sent: 1n, signal_throttled: 1n, drop_auth_missing: 2n });
      await new Promise((r) => setTimeout(r, 350));
      dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) });
    });
    expect(signals).toHaveLength(2);
    expect(signals[1]!.bootNs - signals[0]!.bootNs).toBeGreaterThanOrEqual(300_000_000n);
    expect(dp.counters()).toEqual({
      ...zero(),
      drop_auth_missing: 3n,
      signal_sent: 2n,
      signal_throttled: 1n,
    });
  });

  it('throttles a flood to one signal per window', () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const r = dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE), repeat: 10_000 });
    expect(r.retval).toBe(TC_ACT_STOLEN);
    const c = dp.counters();
    expect(c.drop_auth_missing).toBe(10_000n);
    expect(c.signal_sent).toBe(1n);
    expect(c.signal_throttled).toBe(9_999n);
  });

  it('checks IP behind one or two in-band VLAN tags (802.1Q, 802.1ad) like untagged IP', () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const stacks = [[0x8100], [0x88a8], [0x88a8, 0x8100], [0x8100, 0x8100]];
    for (const vlanTags of stacks) {
      const v4 = buildTcpSyn({ src: LOCAL, dst: REMOTE, vlanTags });
      const v6 = buildTcpSyn({ src: LOCAL6, dst: REMOTE6, vlanTags });
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: v4 }).retval).toBe(TC_ACT_STOLEN);
      dp.clearThrottle(); // same pair
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: v6 }).retval).toBe(TC_ACT_STOLEN);
      expect(
        dp.testRun(wire.PROGRAMS.tcIngress, { data: buildTcpSyn({ src: REMOTE, dst: LOCAL, vlanTags }) })
          .retval,
      ).toBe(TC_ACT_SHOT);
    }
    const c = dp.counters();
    expect(c.pass_not_ip).toBe(0n);
    expect(c.drop_auth_missing).toBe(BigInt(stacks.length * 3));
    // with a live entry, the tagged packets pass as authenticated
    dp.auth.update(KEY_10_20, { expiresAtMs: Date.now() + 60_000 });
    dp.resetCounters();
    for (const vlanTags of stacks) {
      const data = buildTcpSyn({ src: LOCAL, dst: REMOTE, vlanTags });
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data }).retval).toBe(TC_ACT_UNSPEC);
    }
    expect(dp.counters()).toEqual({ ...zero(), pass_authenticated: BigInt(stacks.length) });
  });

  it('drops encapsulations that may hide IP and are not parsed; other non-IP frames pass', () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const threeTags = buildTcpSyn({ src: LOCAL, dst: REMOTE, vlanTags: [0x88a8, 0x8100, 0x8100] });
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: threeTags }).retval).toBe(TC_ACT_STOLEN);
    expect(dp.testRun(wire.PROGRAMS.tcIngress, { data: threeTags }).retval).toBe(TC_ACT_SHOT);
    const mpls = buildMplsTcpSyn({ src: LOCAL, dst: REMOTE });
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: mpls }).retval).toBe(TC_ACT_STOLEN);
    // ARP behind a VLAN tag is still just ARP
    const arp = buildArp();
    const taggedArp = Buffer.concat([
      arp.subarray(0, 12),
      Buffer.from([0x81, 0x00, 0x00, 0x64, 0x08, 0x06]),
      arp.subarray(14),
    ]);
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: taggedArp }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toEqual({ ...zero(), drop_unparsed_encap: 3n, pass_not_ip: 1n });
  });

  it('handles IPv6', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    const signals = await collectSignals(dp, 1, () => {
      expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL6, REMOTE6) }).retval).toBe(TC_ACT_STOLEN);
    });
    expect(signals[0]).toMatchObject({ localId: 10, remoteId: 20, remoteNode: 2 });
    dp.auth.update(KEY_10_20, { expiresAtMs: Date.now() + 60_000 });
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL6, REMOTE6) }).retval).toBe(TC_ACT_UNSPEC);
    expect(dp.testRun(wire.PROGRAMS.cgroupIngress, { data: syn(REMOTE6, LOCAL6) }).retval).toBe(CG_ALLOW);
    expect(dp.counters()).toEqual({
      ...zero(),
      drop_auth_missing: 1n,
      signal_sent: 1n,
      pass_authenticated: 2n,
    });
  });

  it('strict mode drops remote-pod traffic that did not arrive through the WireGuard interface', () => {
    dp.setSettings({ signalThrottleMs: 250, wireguardIfindex: 77, strictWireguard: true });
    expect(dp.settings()).toEqual({
      signalThrottleMs: 250,
      wireguardIfindex: 77,
      strictWireguard: true,
      synRtoMs: wire.DEFAULT_SYN_RTO_MS,
      kernelHz: kernelHz().hz,
    });
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    dp.auth.update(KEY_10_20, { expiresAtMs: Date.now() + 60_000 });
    expect(dp.testRun(wire.PROGRAMS.tcIngress, { data: syn(REMOTE, LOCAL), ingressIfindex: 5 }).retval).toBe(
      TC_ACT_SHOT,
    );
    expect(dp.testRun(wire.PROGRAMS.tcIngress, { data: syn(REMOTE, LOCAL), ingressIfindex: 77 }).retval).toBe(
      TC_ACT_UNSPEC,
    );
    // not a remote pod (unknown source): strict mode does not apply
    expect(dp.testRun(wire.PROGRAMS.tcIngress, { data: syn(UNKNOWN, LOCAL), ingressIfindex: 5 }).retval).toBe(
      TC_ACT_UNSPEC,
    );
    // egress semantics and cgroup programs are not subject to strict mode
    expect(dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE), ingressIfindex: 5 }).retval).toBe(
      TC_ACT_UNSPEC,
    );
    expect(
      dp.testRun(wire.PROGRAMS.cgroupIngress, { data: syn(REMOTE, LOCAL), ingressIfindex: 5 }).retval,
    ).toBe(CG_ALLOW);
    expect(dp.counters()).toEqual({
      ...zero(),
      drop_not_via_wireguard: 1n,
      pass_authenticated: 3n,
      pass_unknown_identity: 1n,
    });
  });

  it('syncs ipcache and policy to a desired state', () => {
    const r = dp.syncPolicy([
      { localId: 10, remoteId: 20, authType: 1 },
      { localId: 10, remoteId: 0, authType: 1 },
    ]);
    expect(r).toEqual({ added: 2, updated: 0, removed: 0 });
    expect(dp.syncPolicy([{ localId: 10, remoteId: 0, authType: 1 }])).toEqual({
      added: 0,
      updated: 0,
      removed: 1,
    });
    expect(dp.listPolicy()).toEqual([{ localId: 10, remoteId: 0, authType: 1, mode: 'enforce' }]);
    const before = dp.listIpcache();
    expect(before).toHaveLength(5);
    const s = dp.syncIpcache([
      ...before.filter((e) => e.cidr !== `${REMOTE3}/32`),
      { cidr: '10.2.0.99/24', identity: 21, nodeId: 2 },
    ]);
    expect(s).toEqual({ added: 0, updated: 1, removed: 1 });
    expect(dp.listIpcache().find((e) => e.cidr === '10.2.0.0/24')).toEqual({
      cidr: '10.2.0.0/24',
      identity: 21,
      nodeId: 2,
    });
    dp.syncIpcache(before);
    expect(dp.listIpcache().sort((a, b) => a.cidr.localeCompare(b.cidr))).toEqual(
      before.sort((a, b) => a.cidr.localeCompare(b.cidr)),
    );
  });

  it('auth map: lookup of a missing key is undefined, delete reports presence', () => {
    expect(dp.auth.lookup(KEY_10_20)).toBeUndefined();
    expect(dp.auth.delete(KEY_10_20)).toBe(false);
    dp.auth.update(KEY_10_20, { expiresAtMs: Date.now() + 1000 });
    expect([...dp.auth.entries()].map(([k]) => k)).toEqual([KEY_10_20]);
    expect(dp.auth.delete(KEY_10_20)).toBe(true);
  });

  it('auth map: batched reads give every entry with the expiry a per-key lookup gives', () => {
    // More entries than one BPF_MAP_LOOKUP_BATCH call returns (256), with distinct expiries.
    const keys = Array.from({ length: 1000 }, (_, i) => ({
      localId: 1000 + i,
      remoteId: 7,
      remoteNode: 1 + (i % 3),
      authType: 1,
    }));
    const base = Date.now() + 60_000;
    keys.forEach((k, i) => dp.auth.update(k, { expiresAtMs: base + i * 1000 }));
    try {
      const batched = new Map([...dp.auth.expiriesClockMs()].map(([k, v]) => [k.localId, v]));
      expect(batched.size).toBe(keys.length);
      for (const k of keys) expect(batched.get(k.localId), String(k.localId)).toBe(dp.auth.expiryClockMs(k));
      const wall = new Map([...dp.auth.entries()].map(([k, v]) => [k.localId, v.expiresAtMs]));
      expect(wall.size).toBe(keys.length);
      // Wall-clock expiries are converted from the boot clock with the clocks' offset sampled at
      // each read: a millisecond or two apart, more when the process is preempted between the two
      // clock reads of a sample (3 ms seen on a loaded 2-core machine). A wrong conversion is off
      // by whole seconds (entries are 1 s apart).
      for (const k of keys)
        expect(Math.abs(wall.get(k.localId)! - dp.auth.lookup(k)!.expiresAtMs)).toBeLessThanOrEqual(50);
    } finally {
      for (const k of keys) dp.auth.delete(k);
    }
    expect([...dp.auth.expiriesClockMs()]).toEqual([]);
  });

  it('close() of a signal source unblocks its pending read and run() resolves', async () => {
    const src = dp.signals();
    const run = src.run(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    src.close();
    await run;
    expect(Date.now() - t0).toBeLessThan(500);
    src.close(); // idempotent
  });

  it('counts and skips ring-buffer records of the wrong size', async () => {
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    // A reader that expects 16-byte records sees the kernel's 160-byte records as malformed.
    const reader = new RingBufReader((dp as unknown as { obj: BpfObject }).obj.mapInfo('ma_signals').fd, {
      recordSize: 16,
    });
    try {
      dp.testRun(wire.PROGRAMS.tcEgress, { data: syn(LOCAL, REMOTE) });
      expect(reader.consumeNow()).toEqual([]);
      expect(reader.badRecords).toBe(1);
      const pending = reader.read();
      reader.close();
      await expect(pending).rejects.toThrow(ClosedError);
    } finally {
      reader.close();
    }
  });
});

describe.skipIf(!isPrivileged())('pinned maps', () => {
  it('are reused on reopen with their contents, and removePins deletes them', () => {
    const fds = openFds();
    const pinDir = randomPinDir();
    try {
      const a = openDatapath(pinDir, { signalThrottleMs: 100, wireguardIfindex: 3, strictWireguard: true });
      a.upsertIpcache({ cidr: '10.9.0.0/16', identity: 5, nodeId: 1 });
      a.setPolicy({ localId: 5, remoteId: 0 }, 1);
      const key = { localId: 5, remoteId: 6, remoteNode: 1, authType: 1 };
      const exp = Date.now() + 30_000;
      a.auth.update(key, { expiresAtMs: exp });
      a.testRun(wire.PROGRAMS.tcEgress, { data: buildArp() });
      a.close();
      a.close(); // idempotent

      const b = openDatapath(pinDir); // no settings: the pinned ones stay
      try {
        expect(b.listIpcache()).toEqual([{ cidr: '10.9.0.0/16', identity: 5, nodeId: 1 }]);
        expect(b.listPolicy()).toEqual([{ localId: 5, remoteId: 0, authType: 1, mode: 'enforce' }]);
        expect(Math.abs(b.auth.lookup(key)!.expiresAtMs - exp)).toBeLessThanOrEqual(2);
        expect(b.settings()).toEqual({
          signalThrottleMs: 100,
          wireguardIfindex: 3,
          strictWireguard: true,
          synRtoMs: wire.DEFAULT_SYN_RTO_MS,
          kernelHz: kernelHz().hz,
        });
        expect(b.counters().pass_not_ip).toBe(1n);
      } finally {
        b.close();
      }
      expect(() => b.listIpcache()).toThrow(/closed/);
    } finally {
      Datapath.removePins(pinDir);
    }
    expect(existsSync(pinDir)).toBe(false);
    expect(openFds()).toBe(fds);
  });

  it('typed map handles check sizes and support batch operations', () => {
    const pinDir = randomPinDir();
    const dp = openDatapath(pinDir);
    const obj = (dp as unknown as { obj: BpfObject }).obj;
    try {
      expect(() => obj.map('ma_policy', wire.authKey, wire.policyValue)).toThrow(SizeMismatchError);
      const policy = obj.map('ma_policy', wire.policyKey, wire.policyValue);
      expect(policy.info).toMatchObject({
        name: 'ma_policy',
        type: wire.MapType.Hash,
        keySize: 8,
        valueSize: 4,
        maxEntries: 16384,
      });
      const entries = Array.from(
        { length: 600 },
        (_, i) =>
          [
            { localId: i + 1, remoteId: 0 },
            { authType: 1, mode: 'enforce' },
          ] as const,
      );
      expect(policy.updateBatch(entries)).toBe(600);
      const read = policy.lookupBatch(128);
      expect(read).toHaveLength(600);
      expect(new Set(read.map(([k]) => k.localId)).size).toBe(600);
      expect(policy.deleteBatch(entries.slice(0, 100).map(([k]) => k))).toBe(100);
      expect(policy.keys()).toHaveLength(500);
      expect(() => policy.lookup({ localId: 1, remoteId: 0 })).toThrow(
        expect.objectContaining({ code: 'MESHAUTH_ERR_DATAPATH_KEY_NOT_EXIST' }),
      );
      policy.close();
      expect(() => policy.keys()).toThrow(/closed/);
    } finally {
      dp.close();
      Datapath.removePins(pinDir);
    }
  });
});

describe.skipIf(!isPrivileged())('load failures', () => {
  it('carry the verifier log', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-bad-'));
    try {
      const src = join(dir, 'bad.bpf.c');
      writeFileSync(
        src,
        [
          '#include <linux/bpf.h>',
          '#include <bpf/bpf_helpers.h>',
          'char LICENSE[] SEC("license") = "GPL";',
          'SEC("tc") int bad(struct __sk_buff *skb) { return *(int *)(long)skb->data; }',
        ].join('\n'),
      );
      const obj = join(dir, 'bad.bpf.o');
      execFileSync('clang', [
        '-O2',
        '-g',
        '-target',
        'bpf',
        '-I/usr/include/x86_64-linux-gnu',
        '-c',
        src,
        '-o',
        obj,
      ]);
      const fds = openFds();
      let err: unknown;
      try {
        BpfObject.load(obj).close();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(VerifierError);
      const v = err as VerifierError;
      expect(v.code).toBe('MESHAUTH_ERR_DATAPATH_VERIFIER');
      expect(v.verifierLog).toMatch(/invalid access to packet|R\d+ invalid mem access/);
      expect(openFds()).toBe(fds);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a missing object file', () => {
    expect(() => BpfObject.load('/nonexistent/meshauth.bpf.o')).toThrow(/npm run build:bpf/);
  });
});
