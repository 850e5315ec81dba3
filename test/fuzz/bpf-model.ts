/**
 * Reference model of the verdict of bpf/meshauth.bpf.c (decide(), load_addrs()) in TypeScript,
 * written from the rules the C documents, for differential fuzzing through BPF_PROG_TEST_RUN:
 *
 * - skb->protocol is what eth_type_trans gives the test run's Ethernet frame; headers are read
 *   from the network header (byte 14), bounds-checked against the linear data;
 * - up to two in-band 802.1Q/802.1ad tags are skipped; a third tag, MPLS or PPPoE session drops
 *   (drop_unparsed_encap); any other non-IP or short packet passes (pass_not_ip); IPv4 needs
 *   version 4 in the first nibble, IPv6 version 6; addresses become IPv4-mapped / native IPv6 keys;
 * - ipcache longest-prefix match; strict WireGuard mode on tc ingress; unknown identities pass;
 *   policy exact pair, then the wildcard remote 0; auth entry live when its expiry is in the future;
 *   enforce drops, permissive passes; every unauthenticated packet signals unless throttled.
 *
 * The model has no verdict cache: the programs' per-CPU cache of the last authenticated flow
 * (ma_flow_cache) must be invisible, whatever changed in the maps between two packets.
 */

export const ID_UNRESOLVED = 0xffffffff;

export type Program = 'tcEgress' | 'tcIngress' | 'cgroupEgress' | 'cgroupIngress';

export interface ModelIpcacheEntry {
  /** 16-byte key (IPv4 as ::ffff:a.b.c.d) and prefix length in bits (IPv4 + 96). */
  addr: Buffer;
  prefixLen: number;
  identity: number;
  nodeId: number;
}

export interface ModelPolicy {
  localId: number;
  remoteId: number;
  authType: number;
  mode: 'enforce' | 'permissive';
}

export interface ModelAuth {
  localId: number;
  remoteId: number;
  remoteNode: number;
  authType: number;
  live: boolean;
}

export interface ModelState {
  ipcache: ModelIpcacheEntry[];
  policy: ModelPolicy[];
  auth: ModelAuth[];
  strictWireguard: boolean;
  wgIfindex: number;
  /** Keys (pairKeyOf) signalled within the throttle window. */
  throttled: Set<string>;
}

export interface ModelSignal {
  localId: number;
  remoteId: number;
  remoteNode: number;
  authType: number;
  direction: 'egress' | 'ingress';
  permissive: boolean;
  unresolved: boolean;
  /** The dropped TCP SYN from the IP header on, when the program captures it (see captureSyn). */
  syn?: Buffer;
}

/** MA_SYN_MAX: the most bytes of a dropped SYN a signal carries. */
const SYN_MAX = 128;

/**
 * The bytes capture_syn() copies: a TCP SYN without payload (SYN set; ACK, RST, FIN clear; IP
 * total length = IP header + TCP header), IPv4 without fragmentation or IPv6 without extension
 * headers, untagged, 40..SYN_MAX bytes, from the IP header on; undefined for anything else.
 */
function captureSyn(frame: Buffer): Buffer | undefined {
  if (frame.length < 14) return undefined;
  const ethertype = frame.readUInt16BE(12);
  const net = frame.subarray(14);
  let ipLen: number;
  let total: number;
  if (ethertype === 0x0800) {
    if (net.length < 20 || net[0]! >> 4 !== 4 || net[9] !== 6 || (net[6]! & 0x3f) !== 0 || net[7] !== 0)
      return undefined;
    ipLen = (net[0]! & 0xf) * 4;
    total = net.readUInt16BE(2);
  } else if (ethertype === 0x86dd) {
    if (net.length < 8 || net[0]! >> 4 !== 6 || net[6] !== 6) return undefined;
    ipLen = 40;
    total = 40 + net.readUInt16BE(4);
  } else {
    return undefined;
  }
  if (ipLen < 20 || net.length < ipLen + 14) return undefined;
  if ((net[ipLen + 13]! & 0x17) !== 0x02) return undefined;
  const doff = (net[ipLen + 12]! >> 4) * 4;
  if (doff < 20 || total !== ipLen + doff) return undefined;
  if (total < 40 || total > SYN_MAX || net.length < total) return undefined;
  return Buffer.from(net.subarray(0, total));
}

export interface ModelVerdict {
  /** Program return value as BPF_PROG_TEST_RUN reports it; undefined when the run is refused. */
  retval: number | undefined;
  /** Counters incremented by this packet. */
  counters: string[];
  signal?: ModelSignal;
}

const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;
const TC_ACT_STOLEN = 4;
const ETH_HLEN = 14;

function ethTypeTrans(frame: Buffer): number {
  const proto = frame.readUInt16BE(12);
  if (proto >= 0x600) return proto;
  // 802.3 frames: raw IPX (0xffff) or 802.2 LLC.
  if (frame.length >= 16 && frame.readUInt16BE(14) === 0xffff) return 0x0001;
  return 0x0004;
}

/**
 * BPF_PROG_TEST_RUN (not the program) refuses with EINVAL a frame shorter than an Ethernet header,
 * and (Linux 6.18, measured) an IPv4 or IPv6 ethertype followed by less than the fixed IP header.
 */
export function testRunRefuses(frame: Buffer): boolean {
  if (frame.length < ETH_HLEN) return true;
  const proto = ethTypeTrans(frame);
  const net = frame.length - ETH_HLEN;
  return (proto === 0x0800 && net < 20) || (proto === 0x86dd && net < 40);
}

type Addrs = { src: Buffer; dst: Buffer } | 'not-ip' | 'encap';

export function loadAddrs(frame: Buffer): Addrs {
  const net = frame.subarray(ETH_HLEN);
  let proto = ethTypeTrans(frame);
  let off = 0;
  const has = (o: number, n: number): boolean => o + n <= net.length;
  for (let i = 0; i < 2; i++) {
    if (proto !== 0x8100 && proto !== 0x88a8) break;
    if (!has(off, 4)) return 'not-ip';
    proto = net.readUInt16BE(off + 2);
    off += 4;
  }
  if ([0x8100, 0x88a8, 0x8847, 0x8848, 0x8864].includes(proto)) return 'encap';
  if (!has(off, 1)) return 'not-ip';
  const vers = net[off]! >> 4;
  if (proto === 0x0800 && vers === 4) {
    if (!has(off + 12, 8)) return 'not-ip';
    const mapped = (a: Buffer): Buffer => Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), a]);
    return { src: mapped(net.subarray(off + 12, off + 16)), dst: mapped(net.subarray(off + 16, off + 20)) };
  }
  if (proto === 0x86dd && vers === 6) {
    if (!has(off + 8, 16) || !has(off + 24, 16)) return 'not-ip';
    return {
      src: Buffer.from(net.subarray(off + 8, off + 24)),
      dst: Buffer.from(net.subarray(off + 24, off + 40)),
    };
  }
  return 'not-ip';
}

function prefixMatches(addr: Buffer, e: ModelIpcacheEntry): boolean {
  const full = e.prefixLen >> 3;
  if (!addr.subarray(0, full).equals(e.addr.subarray(0, full))) return false;
  const rest = e.prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (addr[full]! & mask) === (e.addr[full]! & mask);
}

export function lpm(ipcache: readonly ModelIpcacheEntry[], addr: Buffer): ModelIpcacheEntry | undefined {
  let best: ModelIpcacheEntry | undefined;
  for (const e of ipcache) if (prefixMatches(addr, e) && (!best || e.prefixLen > best.prefixLen)) best = e;
  return best;
}

export function pairKeyOf(k: {
  localId: number;
  remoteId: number;
  remoteNode: number;
  authType: number;
}): string {
  return `${k.localId}/${k.remoteId}/${k.remoteNode}/${k.authType}`;
}

/** The verdict of one test run of `program` over `frame` in `state` (whose throttle set it updates). */
export function predict(
  program: Program,
  frame: Buffer,
  ingressIfindex: number,
  state: ModelState,
): ModelVerdict {
  if (testRunRefuses(frame)) return { retval: undefined, counters: [] };
  const isTc = program === 'tcEgress' || program === 'tcIngress';
  const egress = program === 'tcEgress' || program === 'cgroupEgress';
  const ret = (pass: boolean): number =>
    isTc ? (pass ? TC_ACT_UNSPEC : egress ? TC_ACT_STOLEN : TC_ACT_SHOT) : pass ? 1 : 0;

  const addrs = loadAddrs(frame);
  if (addrs === 'encap') return { retval: ret(false), counters: ['drop_unparsed_encap'] };
  if (addrs === 'not-ip') return { retval: ret(true), counters: ['pass_not_ip'] };

  const local = lpm(state.ipcache, egress ? addrs.src : addrs.dst);
  const remote = lpm(state.ipcache, egress ? addrs.dst : addrs.src);
  if (
    isTc &&
    !egress &&
    state.strictWireguard &&
    remote &&
    remote.nodeId !== 0 &&
    ingressIfindex !== state.wgIfindex
  ) {
    return { retval: ret(false), counters: ['drop_not_via_wireguard'] };
  }
  if (
    !local ||
    !remote ||
    local.nodeId !== 0 ||
    local.identity === 0 ||
    local.identity === ID_UNRESOLVED ||
    remote.identity === 0
  ) {
    return { retval: ret(true), counters: ['pass_unknown_identity'] };
  }
  const pol =
    state.policy.find((p) => p.localId === local.identity && p.remoteId === remote.identity) ??
    state.policy.find((p) => p.localId === local.identity && p.remoteId === 0);
  if (!pol || pol.authType === 0) return { retval: ret(true), counters: ['pass_no_policy'] };
  const unresolved = remote.identity === ID_UNRESOLVED;
  const pass = pol.mode === 'permissive';
  const key = {
    localId: local.identity,
    remoteId: remote.identity,
    remoteNode: remote.nodeId,
    authType: pol.authType,
  };
  const counters: string[] = [];
  if (unresolved) {
    counters.push(pass ? 'pass_permissive' : 'drop_unresolved_pod_ip');
  } else {
    const av = state.auth.find((a) => pairKeyOf(a) === pairKeyOf(key));
    if (av?.live) return { retval: ret(true), counters: ['pass_authenticated'] };
    counters.push(pass ? 'pass_permissive' : av ? 'drop_auth_expired' : 'drop_auth_missing');
  }
  const k = pairKeyOf(key);
  if (state.throttled.has(k)) return { retval: ret(pass), counters: [...counters, 'signal_throttled'] };
  state.throttled.add(k);
  // only a tc program of egress semantics captures, and only the SYN it drops on a resolved pair
  const syn = isTc && egress && !pass && !unresolved ? captureSyn(frame) : undefined;
  return {
    retval: ret(pass),
    counters: [...counters, 'signal_sent'],
    signal: {
      ...key,
      direction: egress ? 'egress' : 'ingress',
      permissive: pass,
      unresolved,
      ...(syn ? { syn } : {}),
    },
  };
}
