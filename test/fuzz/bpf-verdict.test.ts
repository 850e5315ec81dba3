/**
 * Fuzz target: the BPF program itself. Random ipcache, policy, auth map and settings, then random
 * and mutated frames through BPF_PROG_TEST_RUN of the four skb programs; the return value, the
 * verdict counters moved and the ring-buffer signal must equal what the TypeScript reference model
 * (bpf-model.ts) predicts. A disagreement prints the frame and the state.
 */
import ipaddr from 'ipaddr.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Datapath,
  DatapathError,
  buildTcpSyn,
  wire,
  type VerdictCounters,
} from '../../src/datapath/index.js';
import { bootNowNs } from '../../src/datapath/clock.js';
import { c, lib } from '../../src/datapath/libbpf.js';
import { RingBufReader } from '../../src/datapath/ringbuf.js';
import { isPrivileged } from '../helpers/netns.js';
import { openDatapath, randomPinDir } from '../integration/datapath/helpers.js';
import {
  ID_UNRESOLVED,
  pairKeyOf,
  predict,
  type ModelAuth,
  type ModelIpcacheEntry,
  type ModelPolicy,
  type ModelState,
  type Program,
} from './bpf-model.js';
import { applyOps, byteOp, corpus, fc, fuzzSync, timeoutFor } from './harness.js';

const TARGET = 'bpf-verdict';
const CI_SECONDS = 4;
const WG_IFINDEX = 7;

const V4 = ['10.1.0.1', '10.1.0.9', '10.2.0.7', '10.2.0.8', '192.0.2.1', '0.0.0.0', '255.255.255.255'];
const V6 = ['fd00:1::1', 'fd00:2::7', 'fd00:2::99', '::', 'fe80::1', '2001:db8::1'];
/** Addresses carried in IPv6 headers: IPv4-mapped ones hit the IPv4 entries. */
const V6_IN_PACKETS = [...V6, '::ffff:10.1.0.1', '::ffff:10.2.0.7'];

const bytes16 = (ip: string): Buffer => {
  const a = ipaddr.parse(ip);
  return Buffer.from(
    a.kind() === 'ipv4' ? (a as ipaddr.IPv4).toIPv4MappedAddress().toByteArray() : a.toByteArray(),
  );
};

function masked(addr: Buffer, prefixLen: number): Buffer {
  const out = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, prefixLen - i * 8));
    out[i] = addr[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

function cidrText(e: ModelIpcacheEntry): string {
  if (e.prefixLen >= 96 && e.addr.subarray(0, 12).equals(bytes16('0.0.0.0').subarray(0, 12))) {
    return `${[...e.addr.subarray(12)].join('.')}/${e.prefixLen - 96}`;
  }
  return `${ipaddr.fromByteArray([...e.addr]).toString()}/${e.prefixLen}`;
}

const identity = fc.constantFrom(0, 10, 20, 30, ID_UNRESOLVED, 0x7fffffff);
const nodeId = fc.constantFrom(0, 2, 3);
const ipcacheEntry: fc.Arbitrary<ModelIpcacheEntry> = fc
  .oneof(
    fc
      .record({ ip: fc.constantFrom(...V4), len: fc.constantFrom(0, 8, 16, 24, 31, 32) })
      .map(({ ip, len }) => ({
        prefixLen: len + 96,
        addr: masked(bytes16(ip), len + 96),
      })),
    fc
      .record({ ip: fc.constantFrom(...V6), len: fc.constantFrom(0, 16, 64, 127, 128) })
      .map(({ ip, len }) => ({
        prefixLen: len,
        addr: masked(bytes16(ip), len),
      })),
  )
  .chain((k) => fc.record({ identity, nodeId }).map((v) => ({ ...k, ...v })));

const state = fc.record({
  ipcache: fc.uniqueArray(ipcacheEntry, {
    maxLength: 10,
    selector: (e) => `${e.addr.toString('hex')}/${e.prefixLen}`,
  }),
  policy: fc.uniqueArray(
    fc.record({
      localId: fc.constantFrom(10, 20, 30),
      remoteId: fc.constantFrom(0, 10, 20, 30, ID_UNRESOLVED),
      authType: fc.constantFrom(0, 1, 2),
      mode: fc.constantFrom('enforce' as const, 'permissive' as const),
    }),
    { maxLength: 6, selector: (p) => `${p.localId}/${p.remoteId}` },
  ),
  auth: fc.uniqueArray(
    fc.record({
      localId: fc.constantFrom(10, 20, 30),
      remoteId: fc.constantFrom(10, 20, 30, ID_UNRESOLVED),
      remoteNode: nodeId,
      authType: fc.constantFrom(1, 2),
      live: fc.boolean(),
    }),
    { maxLength: 6, selector: pairKeyOf },
  ),
  strictWireguard: fc.boolean(),
});

/** A frame: Ethernet, 0..3 VLAN tags, then IPv4/IPv6/other, optionally truncated and mutated. */
const frame = fc
  .record({
    family: fc.constantFrom(4, 6),
    src: fc.nat(),
    dst: fc.nat(),
    tags: fc.array(fc.constantFrom(0x8100, 0x88a8), { maxLength: 3 }),
    ethertype: fc.oneof(
      { weight: 6, arbitrary: fc.constant(undefined) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(0x0800, 0x86dd, 0x8847, 0x8848, 0x8864, 0x0806, 0x05dc, 0x0600, 0x8100),
      },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
    ),
    version: fc.oneof(
      { weight: 8, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) },
    ),
    truncate: fc.oneof(
      { weight: 5, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.nat({ max: 80 }) },
    ),
    ops: fc.oneof(
      { weight: 4, arbitrary: fc.constant([]) },
      { weight: 1, arbitrary: fc.array(byteOp, { maxLength: 3 }) },
    ),
  })
  .map((f) => {
    const pool = f.family === 4 ? V4 : V6_IN_PACKETS;
    const src = bytes16(pool[f.src % pool.length]!);
    const dst = bytes16(pool[f.dst % pool.length]!);
    let ip: Buffer;
    if (f.family === 4) {
      ip = Buffer.alloc(40);
      ip[0] = ((f.version ?? 4) << 4) | 5;
      ip[9] = 6;
      src.copy(ip, 12, 12);
      dst.copy(ip, 16, 12);
    } else {
      ip = Buffer.alloc(60);
      ip[0] = (f.version ?? 6) << 4;
      ip[6] = 6;
      src.copy(ip, 8);
      dst.copy(ip, 24);
    }
    const inner = f.ethertype ?? (f.family === 4 ? 0x0800 : 0x86dd);
    const types = [...f.tags, inner];
    const eth = Buffer.alloc(14);
    eth.writeUInt16BE(types[0]!, 12);
    const tags = f.tags.map((_t, i) => {
      const t = Buffer.alloc(4);
      t.writeUInt16BE(100 + i, 0);
      t.writeUInt16BE(types[i + 1]!, 2);
      return t;
    });
    let out = Buffer.concat([eth, ...tags, ip]);
    if (f.truncate !== undefined) out = out.subarray(0, f.truncate);
    return applyOps(out, f.ops);
  });

const packet = fc.record({
  program: fc.constantFrom<Program>('tcEgress', 'tcIngress', 'cgroupEgress', 'cgroupIngress'),
  ifindex: fc.constantFrom(0, WG_IFINDEX, 3),
  frame,
});

/**
 * Map changes between packets. The programs keep the last authenticated flow's verdict per CPU
 * (ma_flow_cache) until a map write brings a new generation; the model has no cache, so any
 * verdict served from a slot the change should have invalidated shows up as a disagreement.
 */
type Change =
  | { kind: 'authSet'; auth: ModelAuth }
  | { kind: 'authDelete'; auth: ModelAuth }
  | { kind: 'ipcacheUpsert'; entry: ModelIpcacheEntry }
  | { kind: 'ipcacheDelete'; entry: ModelIpcacheEntry }
  | { kind: 'policySet'; policy: ModelPolicy }
  | { kind: 'policyDelete'; policy: ModelPolicy }
  | { kind: 'strict'; on: boolean };

const authEntry: fc.Arbitrary<ModelAuth> = fc.record({
  localId: fc.constantFrom(10, 20, 30),
  remoteId: fc.constantFrom(10, 20, 30),
  remoteNode: nodeId,
  authType: fc.constantFrom(1, 2),
  live: fc.boolean(),
});
const policyEntry: fc.Arbitrary<ModelPolicy> = fc.record({
  localId: fc.constantFrom(10, 20, 30),
  remoteId: fc.constantFrom(0, 10, 20, 30, ID_UNRESOLVED),
  authType: fc.constantFrom(0, 1, 2),
  mode: fc.constantFrom('enforce' as const, 'permissive' as const),
});
/** Host entries of the hot flows' addresses, and the wider prefixes around them. */
const hotIpcacheEntry: fc.Arbitrary<ModelIpcacheEntry> = fc
  .record({ ip: fc.constantFrom('10.1.0.1', '10.2.0.7'), len: fc.constantFrom(24, 32) })
  .map(({ ip, len }) => ({ prefixLen: len + 96, addr: masked(bytes16(ip), len + 96) }))
  .chain((k) => fc.record({ identity, nodeId }).map((v) => ({ ...k, ...v })));

const change: fc.Arbitrary<Change> = fc.oneof(
  { weight: 3, arbitrary: authEntry.map((auth) => ({ kind: 'authSet' as const, auth })) },
  { weight: 2, arbitrary: authEntry.map((auth) => ({ kind: 'authDelete' as const, auth })) },
  { weight: 2, arbitrary: hotIpcacheEntry.map((entry) => ({ kind: 'ipcacheUpsert' as const, entry })) },
  { weight: 1, arbitrary: hotIpcacheEntry.map((entry) => ({ kind: 'ipcacheDelete' as const, entry })) },
  { weight: 2, arbitrary: policyEntry.map((policy) => ({ kind: 'policySet' as const, policy })) },
  { weight: 1, arbitrary: policyEntry.map((policy) => ({ kind: 'policyDelete' as const, policy })) },
  { weight: 1, arbitrary: fc.boolean().map((on) => ({ kind: 'strict' as const, on })) },
);

/** A base state in which the hot flows (10.1.0.1 <-> 10.2.0.7) are authenticated. */
const AUTHENTICATED_BASE = {
  ipcache: [
    { prefixLen: 128, addr: bytes16('10.1.0.1'), identity: 10, nodeId: 0 },
    { prefixLen: 128, addr: bytes16('10.2.0.7'), identity: 20, nodeId: 2 },
    { prefixLen: 120, addr: masked(bytes16('10.2.0.0'), 120), identity: ID_UNRESOLVED, nodeId: 2 },
  ],
  policy: [{ localId: 10, remoteId: 20, authType: 1, mode: 'enforce' as const }],
  auth: [{ localId: 10, remoteId: 20, remoteNode: 2, authType: 1, live: true }],
  strictWireguard: false,
};

const hotPacket = fc.record({
  program: fc.constantFrom<Program>('tcEgress', 'tcIngress', 'cgroupEgress', 'cgroupIngress'),
  ifindex: fc.constantFrom(0, WG_IFINDEX, 3),
  v6: fc.boolean(),
});

function hotFrame(p: { program: Program; v6: boolean }): Buffer {
  const egress = p.program === 'tcEgress' || p.program === 'cgroupEgress';
  const [local, remote] = p.v6 ? ['::ffff:10.1.0.1', '::ffff:10.2.0.7'] : ['10.1.0.1', '10.2.0.7'];
  return buildTcpSyn(egress ? { src: local!, dst: remote! } : { src: remote!, dst: local! });
}

const step = fc.oneof(
  { weight: 3, arbitrary: fc.record({ packet: hotPacket, times: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ change }) },
);

const PROGRAM_NAMES: Record<Program, string> = {
  tcEgress: wire.PROGRAMS.tcEgress,
  tcIngress: wire.PROGRAMS.tcIngress,
  cgroupEgress: wire.PROGRAMS.cgroupEgress,
  cgroupIngress: wire.PROGRAMS.cgroupIngress,
};

function moved(before: VerdictCounters, after: VerdictCounters): string[] {
  return wire.VERDICT_NAMES.flatMap((n) =>
    Array.from({ length: Number(after[n] - before[n]) }, () => n),
  ).sort();
}

describe.skipIf(!isPrivileged())('fuzz: BPF program verdicts against the reference model', () => {
  let pinDir: string;
  let dp: Datapath;
  let ring: RingBufReader;
  let ringFd = -1;

  beforeAll(() => {
    pinDir = randomPinDir();
    dp = openDatapath(pinDir, {
      signalThrottleMs: 600_000,
      wireguardIfindex: WG_IFINDEX,
      strictWireguard: false,
    });
    ringFd = lib().bpf_obj_get(`${pinDir}/${wire.MAPS.signals.name}`);
    expect(ringFd).toBeGreaterThanOrEqual(0);
    ring = new RingBufReader(ringFd, { recordSize: wire.signal.size, name: 'ma_signals' });
  });

  afterAll(() => {
    ring?.close();
    if (ringFd >= 0) c().close(ringFd);
    dp?.close();
    if (pinDir) Datapath.removePins(pinDir);
  });

  function load(s: Omit<ModelState, 'throttled' | 'wgIfindex'>): ModelState {
    dp.setSettings({
      signalThrottleMs: 600_000,
      wireguardIfindex: WG_IFINDEX,
      strictWireguard: s.strictWireguard,
    });
    dp.syncIpcache(s.ipcache.map((e) => ({ cidr: cidrText(e), identity: e.identity, nodeId: e.nodeId })));
    dp.syncPolicy(s.policy.map((p: ModelPolicy) => ({ ...p })));
    for (const [k] of [...dp.auth.entries()]) dp.auth.delete(k);
    const now = Date.now();
    for (const a of s.auth as ModelAuth[]) {
      const { live, ...key } = a;
      dp.auth.update(key, { expiresAtMs: live ? now + 600_000 : now - 600_000 });
    }
    dp.clearThrottle();
    ring.consumeNow();
    return { ...s, wgIfindex: WG_IFINDEX, throttled: new Set() };
  }

  function runOne(st: ModelState, p: { program: Program; ifindex: number; frame: Buffer }): void {
    const expected = predict(p.program, p.frame, p.ifindex, st);
    const before = dp.counters();
    const t0 = bootNowNs();
    let retval: number | undefined;
    try {
      retval = dp.testRun(PROGRAM_NAMES[p.program], { data: p.frame, ingressIfindex: p.ifindex }).retval;
    } catch (err) {
      expect(err).toBeInstanceOf(DatapathError);
    }
    const t1 = bootNowNs();
    const signals = ring.consumeNow().map((r) => wire.signal.decode(r));
    const ctx = `program ${p.program} ifindex ${p.ifindex} frame ${p.frame.toString('hex')}`;
    expect(retval, ctx).toBe(expected.retval);
    expect(moved(before, dp.counters()), ctx).toEqual([...expected.counters].sort());
    if (expected.signal) {
      expect(signals, ctx).toHaveLength(1);
      const { bootNs, ...rest } = signals[0]!;
      expect(rest, ctx).toEqual(expected.signal);
      expect(bootNs >= t0 && bootNs <= t1, ctx).toBe(true);
    } else {
      expect(signals, ctx).toEqual([]);
    }
  }

  /** Applies a change through the Datapath (which ends each write with a new generation) and to the model. */
  function applyChange(st: ModelState, ch: Change): void {
    const sameKey = (a: ModelAuth, b: ModelAuth): boolean => pairKeyOf(a) === pairKeyOf(b);
    const samePrefix = (a: ModelIpcacheEntry, b: ModelIpcacheEntry): boolean =>
      a.prefixLen === b.prefixLen && a.addr.equals(b.addr);
    const samePolicy = (a: ModelPolicy, b: ModelPolicy): boolean =>
      a.localId === b.localId && a.remoteId === b.remoteId;
    switch (ch.kind) {
      case 'authSet': {
        const { live, ...key } = ch.auth;
        dp.auth.update(key, { expiresAtMs: Date.now() + (live ? 600_000 : -600_000) });
        st.auth = [...st.auth.filter((a) => !sameKey(a, ch.auth)), ch.auth];
        break;
      }
      case 'authDelete': {
        const { localId, remoteId, remoteNode, authType } = ch.auth;
        dp.auth.delete({ localId, remoteId, remoteNode, authType });
        st.auth = st.auth.filter((a) => !sameKey(a, ch.auth));
        break;
      }
      case 'ipcacheUpsert':
        dp.upsertIpcache({ cidr: cidrText(ch.entry), identity: ch.entry.identity, nodeId: ch.entry.nodeId });
        st.ipcache = [...st.ipcache.filter((e) => !samePrefix(e, ch.entry)), ch.entry];
        break;
      case 'ipcacheDelete':
        dp.deleteIpcache(cidrText(ch.entry));
        st.ipcache = st.ipcache.filter((e) => !samePrefix(e, ch.entry));
        break;
      case 'policySet':
        dp.setPolicy(
          { localId: ch.policy.localId, remoteId: ch.policy.remoteId },
          ch.policy.authType,
          ch.policy.mode,
        );
        st.policy = [...st.policy.filter((p) => !samePolicy(p, ch.policy)), ch.policy];
        break;
      case 'policyDelete':
        dp.deletePolicy({ localId: ch.policy.localId, remoteId: ch.policy.remoteId });
        st.policy = st.policy.filter((p) => !samePolicy(p, ch.policy));
        break;
      case 'strict':
        dp.setSettings({ signalThrottleMs: 600_000, wireguardIfindex: WG_IFINDEX, strictWireguard: ch.on });
        st.strictWireguard = ch.on;
        break;
    }
  }

  it('regression frames of the corpus', () => {
    // Each file: a JSON state and packets, as a failing run printed them.
    const files = corpus(TARGET);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const doc = JSON.parse(f.data.toString('utf8')) as {
        state: {
          ipcache: Array<{ cidr: string; identity: number; nodeId: number }>;
          policy: ModelPolicy[];
          auth: ModelAuth[];
          strictWireguard: boolean;
        };
        packets: Array<{ program: Program; ifindex: number; frame: string }>;
      };
      const ipcache = doc.state.ipcache.map((e) => {
        const [ip, len] = e.cidr.split('/') as [string, string];
        const v4 = ipaddr.IPv4.isValid(ip);
        const prefixLen = Number(len) + (v4 ? 96 : 0);
        return { addr: masked(bytes16(ip), prefixLen), prefixLen, identity: e.identity, nodeId: e.nodeId };
      });
      const st = load({ ...doc.state, ipcache });
      for (const p of doc.packets) runOne(st, { ...p, frame: Buffer.from(p.frame, 'hex') });
    }
  });

  it(
    'random state and frames: kernel verdicts, counters and signals equal the model',
    () => {
      fuzzSync(
        TARGET,
        CI_SECONDS,
        fc.record({ state, packets: fc.array(packet, { minLength: 1, maxLength: 12 }) }),
        ({ state: s, packets }) => {
          const st = load(s);
          for (const p of packets) runOne(st, p);
        },
        20,
      );
    },
    timeoutFor(CI_SECONDS),
  );

  it(
    'map changes between packets of the same flows: the verdict cache never outlives a change',
    () => {
      let authenticatedRuns = 0;
      fuzzSync(
        `${TARGET}-sequence`,
        CI_SECONDS,
        fc.record({
          base: fc.oneof(
            { weight: 3, arbitrary: fc.constant(AUTHENTICATED_BASE) },
            { weight: 1, arbitrary: state },
          ),
          steps: fc.array(step, { minLength: 1, maxLength: 16 }),
        }),
        ({ base, steps }) => {
          const st = load(base);
          for (const s of steps) {
            if ('change' in s) {
              applyChange(st, s.change);
              continue;
            }
            const frame = hotFrame(s.packet);
            for (let i = 0; i < s.times; i++) {
              const before = dp.counters().pass_authenticated;
              runOne(st, { program: s.packet.program, ifindex: s.packet.ifindex, frame });
              if (dp.counters().pass_authenticated > before) authenticatedRuns++;
            }
          }
        },
        20,
      );
      // the property is about cached verdicts: enough packets must have been authenticated ones
      expect(authenticatedRuns).toBeGreaterThan(20);
    },
    timeoutFor(CI_SECONDS),
  );
});
