/**
 * Codecs for the wire structs of bpf/meshauth.h. Each codec mirrors one C struct byte for byte
 * (little-endian host order, explicit padding) and asserts its size; a change on either side must
 * be made on both.
 */
import type { AuthKey, Direction, IpcacheEntry, PolicyKey, PolicyMode, VerdictName } from './types.js';
import { formatCidr, parseCidr } from './cidr.js';
import { DatapathInputError } from './errors.js';

/** Encodes and decodes one fixed-size C struct. */
export interface Codec<T> {
  readonly size: number;
  encode(value: T): Buffer;
  decode(buf: Buffer, offset?: number): T;
}

function checked<T>(
  name: string,
  size: number,
  enc: (v: T, b: Buffer) => void,
  dec: (b: Buffer, o: number) => T,
): Codec<T> {
  return {
    size,
    encode(value: T): Buffer {
      const b = Buffer.alloc(size);
      enc(value, b);
      return b;
    },
    decode(buf: Buffer, offset = 0): T {
      if (buf.length - offset < size) {
        throw new DatapathInputError(`decode ${name}`, `need ${size} bytes, have ${buf.length - offset}`);
      }
      return dec(buf, offset);
    },
  };
}

function u32(name: string, field: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new DatapathInputError(`encode ${name}`, `${field} must be a u32, got ${v}`);
  }
  return v;
}

function u8(name: string, field: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xff)
    throw new DatapathInputError(`encode ${name}`, `${field} must be a u8, got ${v}`);
  return v;
}

/** struct ma_ipcache_key (20 bytes): u32 prefixlen; u8 addr[16]. Encoded from a CIDR string. */
export const ipcacheKey: Codec<string> = checked<string>(
  'ma_ipcache_key',
  20,
  (cidr, b) => {
    const p = parseCidr(cidr);
    b.writeUInt32LE(p.prefixlen, 0);
    p.addr.copy(b, 4);
  },
  (b, o) => formatCidr({ prefixlen: b.readUInt32LE(o), addr: Buffer.from(b.subarray(o + 4, o + 20)) }),
);

/**
 * struct ma_host_key (16 bytes): u8 addr[16], the address of a host entry of the ipcache (IPv4 as
 * ::ffff:a.b.c.d). Encoded from an address or a full-length prefix ("10.0.1.5", "10.0.1.5/32",
 * "fd00::5/128"); decoded to the canonical full-length prefix ("10.0.1.5/32"), the form the
 * ipcache key decodes to.
 */
export const hostKey: Codec<string> = checked<string>(
  'ma_host_key',
  16,
  (cidr, b) => {
    const p = parseCidr(cidr);
    if (p.prefixlen !== 128)
      throw new DatapathInputError('encode ma_host_key', `${JSON.stringify(cidr)} is not a host address`);
    p.addr.copy(b, 0);
  },
  (b, o) => formatCidr({ prefixlen: 128, addr: Buffer.from(b.subarray(o, o + 16)) }),
);

/** struct ma_ipcache_value (8 bytes): u32 identity; u32 node_id. */
export const ipcacheValue: Codec<Omit<IpcacheEntry, 'cidr'>> = checked(
  'ma_ipcache_value',
  8,
  (v, b) => {
    b.writeUInt32LE(u32('ma_ipcache_value', 'identity', v.identity), 0);
    b.writeUInt32LE(u32('ma_ipcache_value', 'nodeId', v.nodeId), 4);
  },
  (b, o) => ({ identity: b.readUInt32LE(o), nodeId: b.readUInt32LE(o + 4) }),
);

/** struct ma_policy_key (8 bytes): u32 local_id; u32 remote_id (0 = any). */
export const policyKey: Codec<PolicyKey> = checked(
  'ma_policy_key',
  8,
  (v, b) => {
    b.writeUInt32LE(u32('ma_policy_key', 'localId', v.localId), 0);
    b.writeUInt32LE(u32('ma_policy_key', 'remoteId', v.remoteId), 4);
  },
  (b, o) => ({ localId: b.readUInt32LE(o), remoteId: b.readUInt32LE(o + 4) }),
);

/** MA_MODE_* of ma_policy_value.mode. */
export const MODE_ENFORCE = 0;
export const MODE_PERMISSIVE = 1;

/** struct ma_policy_value (4 bytes): u8 auth_type; u8 mode (MA_MODE_*); u8 pad[2]. */
export const policyValue: Codec<{ authType: number; mode: PolicyMode }> = checked(
  'ma_policy_value',
  4,
  (v, b) => {
    b.writeUInt8(u8('ma_policy_value', 'authType', v.authType), 0);
    b.writeUInt8(v.mode === 'permissive' ? MODE_PERMISSIVE : MODE_ENFORCE, 1);
  },
  (b, o) => ({
    authType: b.readUInt8(o),
    mode: b.readUInt8(o + 1) === MODE_PERMISSIVE ? 'permissive' : 'enforce',
  }),
);

/** struct ma_auth_key (16 bytes): u32 local_id; u32 remote_id; u32 remote_node; u8 auth_type; u8 pad[3]. */
export const authKey: Codec<AuthKey> = checked(
  'ma_auth_key',
  16,
  (v, b) => {
    b.writeUInt32LE(u32('ma_auth_key', 'localId', v.localId), 0);
    b.writeUInt32LE(u32('ma_auth_key', 'remoteId', v.remoteId), 4);
    b.writeUInt32LE(u32('ma_auth_key', 'remoteNode', v.remoteNode), 8);
    b.writeUInt8(u8('ma_auth_key', 'authType', v.authType), 12);
  },
  (b, o) => ({
    localId: b.readUInt32LE(o),
    remoteId: b.readUInt32LE(o + 4),
    remoteNode: b.readUInt32LE(o + 8),
    authType: b.readUInt8(o + 12),
  }),
);

/** struct ma_auth_value (8 bytes): u64 expiry_boot_ns (CLOCK_BOOTTIME). */
export const authValue: Codec<{ expiryBootNs: bigint }> = checked(
  'ma_auth_value',
  8,
  (v, b) => {
    b.writeBigUInt64LE(v.expiryBootNs < 0n ? 0n : v.expiryBootNs, 0);
  },
  (b, o) => ({ expiryBootNs: b.readBigUInt64LE(o) }),
);

/** ma_throttle value (8 bytes): u64 boot ns of the last signal for the key. */
export const bootNsValue: Codec<bigint> = checked(
  'u64',
  8,
  (v, b) => {
    b.writeBigUInt64LE(v, 0);
  },
  (b, o) => b.readBigUInt64LE(o),
);

/** Decoded struct ma_flow_key: addresses as 16 bytes (IPv4 as ::ffff:a.b.c.d). */
export interface WireFlowKey {
  src: Buffer;
  dst: Buffer;
  /** skb->ingress_ifindex for ingress semantics, 0 for egress. */
  ifindex: number;
}

/** Decoded struct ma_flow_cache_slot. */
export interface WireFlowCacheSlot {
  /** Odd while a program writes the slot. */
  seq: bigint;
  /** ma_generation value the verdict was computed under (0: never written). */
  generation: bigint;
  expiryBootNs: bigint;
  key: WireFlowKey;
}

/**
 * struct ma_flow_cache_slot (64 bytes): u64 seq; u64 generation; u64 expiry_boot_ns; then struct
 * ma_flow_key (40 bytes): u8 src[16]; u8 dst[16]; u32 ifindex; u32 pad.
 */
export const flowCacheSlot: Codec<WireFlowCacheSlot> = checked(
  'ma_flow_cache_slot',
  64,
  (v, b) => {
    b.writeBigUInt64LE(v.seq, 0);
    b.writeBigUInt64LE(v.generation, 8);
    b.writeBigUInt64LE(v.expiryBootNs, 16);
    if (v.key.src.length !== 16 || v.key.dst.length !== 16)
      throw new DatapathInputError('encode ma_flow_cache_slot', 'addresses must be 16 bytes');
    v.key.src.copy(b, 24);
    v.key.dst.copy(b, 40);
    b.writeUInt32LE(u32('ma_flow_cache_slot', 'ifindex', v.key.ifindex), 56);
  },
  (b, o) => ({
    seq: b.readBigUInt64LE(o),
    generation: b.readBigUInt64LE(o + 8),
    expiryBootNs: b.readBigUInt64LE(o + 16),
    key: {
      src: Buffer.from(b.subarray(o + 24, o + 40)),
      dst: Buffer.from(b.subarray(o + 40, o + 56)),
      ifindex: b.readUInt32LE(o + 56),
    },
  }),
);

/** Program number of each skb program in ma_flow_cache (MA_PROG_*). */
export const FLOW_CACHE_PROGRAMS = {
  tcEgress: 0,
  tcIngress: 1,
  cgroupEgress: 2,
  cgroupIngress: 3,
} as const;

/** Slots per program in ma_flow_cache: 2^MA_FLOW_CACHE_BITS. */
export const FLOW_CACHE_BITS = 8;

/**
 * ma_flow_cache index of a flow's slot for `program`: program * 2^FLOW_CACHE_BITS + flow_hash(key),
 * the hash of bpf/meshauth.bpf.c (u32 arithmetic over the key's little-endian 32-bit words).
 */
export function flowCacheIndex(program: keyof typeof FLOW_CACHE_PROGRAMS, key: WireFlowKey): number {
  const w = (b: Buffer, i: number): number => b.readUInt32LE(i * 4);
  const s = (w(key.src, 0) ^ w(key.src, 1) ^ w(key.src, 2) ^ w(key.src, 3)) >>> 0;
  const d = (w(key.dst, 0) ^ w(key.dst, 1) ^ w(key.dst, 2) ^ w(key.dst, 3)) >>> 0;
  const h = (Math.imul(s, 0x9e3779b1) ^ d ^ Math.imul(key.ifindex, 0x85ebca77)) >>> 0;
  const slot = Math.imul(h, 0x9e3779b1) >>> (32 - FLOW_CACHE_BITS);
  return (FLOW_CACHE_PROGRAMS[program] << FLOW_CACHE_BITS) | slot;
}

/** ma_generation value (8 bytes): u64, 0 = verdict cache off. */
export const u64Value: Codec<bigint> = checked(
  'u64',
  8,
  (v, b) => {
    b.writeBigUInt64LE(v, 0);
  },
  (b, o) => b.readBigUInt64LE(o),
);

/** Array-map key (4 bytes): u32 index. */
export const u32Key: Codec<number> = checked(
  'u32',
  4,
  (v, b) => {
    b.writeUInt32LE(u32('u32', 'index', v), 0);
  },
  (b, o) => b.readUInt32LE(o),
);

/** Decoded struct ma_signal. */
export interface WireSignal {
  localId: number;
  remoteId: number;
  remoteNode: number;
  authType: number;
  direction: Direction;
  /** MA_SIG_PERMISSIVE: the pair's policy is permissive and the packet passed. */
  permissive: boolean;
  /** MA_SIG_UNRESOLVED: the remote address is in a pod CIDR but has no identity yet. */
  unresolved: boolean;
  bootNs: bigint;
  /**
   * The dropped packet when it was a TCP SYN without payload dropped by a tc program of egress
   * semantics: its bytes from the IP header on (IPv4 or IPv6, at most SYN_MAX), else undefined.
   */
  syn?: Buffer;
}

/** MA_SYN_MAX: the largest SYN a signal carries, bytes. */
export const SYN_MAX = 128;

/** ma_signal.flags bits (MA_SIG_*). */
export const SIGNAL_PERMISSIVE = 1;
export const SIGNAL_UNRESOLVED = 2;

/** MA_DIR_* */
export const DIRECTION_EGRESS = 0;
export const DIRECTION_INGRESS = 1;

/**
 * struct ma_signal (160 bytes): u32 local_id, remote_id, remote_node; u8 auth_type, direction,
 * flags (MA_SIG_*); u8 pad; u64 boot_ns; u16 syn_len; u8 pad2[6]; u8 syn[MA_SYN_MAX]. A syn_len
 * above MA_SYN_MAX (never written by the datapath) decodes as no SYN.
 */
export const signal: Codec<WireSignal> = checked(
  'ma_signal',
  32 + SYN_MAX,
  (v, b) => {
    b.writeUInt32LE(u32('ma_signal', 'localId', v.localId), 0);
    b.writeUInt32LE(u32('ma_signal', 'remoteId', v.remoteId), 4);
    b.writeUInt32LE(u32('ma_signal', 'remoteNode', v.remoteNode), 8);
    b.writeUInt8(u8('ma_signal', 'authType', v.authType), 12);
    b.writeUInt8(v.direction === 'ingress' ? DIRECTION_INGRESS : DIRECTION_EGRESS, 13);
    b.writeUInt8((v.permissive ? SIGNAL_PERMISSIVE : 0) | (v.unresolved ? SIGNAL_UNRESOLVED : 0), 14);
    b.writeBigUInt64LE(v.bootNs, 16);
    const syn = v.syn ?? Buffer.alloc(0);
    if (syn.length > SYN_MAX) throw new RangeError(`ma_signal.syn: ${syn.length} bytes, at most ${SYN_MAX}`);
    b.writeUInt16LE(syn.length, 24);
    syn.copy(b, 32);
  },
  (b, o) => {
    const synLen = b.readUInt16LE(o + 24);
    return {
      localId: b.readUInt32LE(o),
      remoteId: b.readUInt32LE(o + 4),
      remoteNode: b.readUInt32LE(o + 8),
      authType: b.readUInt8(o + 12),
      direction: b.readUInt8(o + 13) === DIRECTION_INGRESS ? 'ingress' : 'egress',
      permissive: (b.readUInt8(o + 14) & SIGNAL_PERMISSIVE) !== 0,
      unresolved: (b.readUInt8(o + 14) & SIGNAL_UNRESOLVED) !== 0,
      bootNs: b.readBigUInt64LE(o + 16),
      ...(synLen > 0 && synLen <= SYN_MAX ? { syn: Buffer.from(b.subarray(o + 32, o + 32 + synLen)) } : {}),
    };
  },
);

/** Decoded struct ma_config. */
export interface WireConfig {
  throttleNs: bigint;
  wgIfindex: number;
  flags: number;
  /** 0 = kernel default (MA_DEFAULT_SYN_RTO_MS). */
  synRtoMs: number;
  /** 0 = kernel default (MA_DEFAULT_HZ). */
  hz: number;
}

/** ma_config.flags bit 0. */
export const FLAG_STRICT_WIREGUARD = 1;

/** Kernel defaults for zero fields of struct ma_config (MA_DEFAULT_SYN_RTO_MS, MA_DEFAULT_HZ). */
export const DEFAULT_SYN_RTO_MS = 8;
export const DEFAULT_HZ = 250;

/** struct ma_config (24 bytes): u64 throttle_ns; u32 wg_ifindex; u32 flags; u32 syn_rto_ms; u32 hz. */
export const config: Codec<WireConfig> = checked(
  'ma_config',
  24,
  (v, b) => {
    b.writeBigUInt64LE(v.throttleNs, 0);
    b.writeUInt32LE(u32('ma_config', 'wgIfindex', v.wgIfindex), 8);
    b.writeUInt32LE(u32('ma_config', 'flags', v.flags), 12);
    b.writeUInt32LE(u32('ma_config', 'synRtoMs', v.synRtoMs), 16);
    b.writeUInt32LE(u32('ma_config', 'hz', v.hz), 20);
  },
  (b, o) => ({
    throttleNs: b.readBigUInt64LE(o),
    wgIfindex: b.readUInt32LE(o + 8),
    flags: b.readUInt32LE(o + 12),
    synRtoMs: b.readUInt32LE(o + 16),
    hz: b.readUInt32LE(o + 20),
  }),
);

/** enum ma_verdict: counter index of each verdict, in the order of bpf/meshauth.h. */
export const VERDICT_NAMES: readonly VerdictName[] = [
  'pass_no_policy',
  'pass_authenticated',
  'pass_unknown_identity',
  'pass_not_ip',
  'drop_auth_missing',
  'drop_auth_expired',
  'drop_not_via_wireguard',
  'signal_sent',
  'signal_throttled',
  'signal_ringbuf_full',
  'syn_rto_shortened',
  'drop_unparsed_encap',
  'pass_permissive',
  'drop_unresolved_pod_ip',
];

/** Map names and sizes of bpf/meshauth.h. */
export const MAPS = {
  ipcache: { name: 'ma_ipcache', maxEntries: 65536 },
  hosts: { name: 'ma_hosts', maxEntries: 65536 },
  policy: { name: 'ma_policy', maxEntries: 16384 },
  auth: { name: 'ma_auth', maxEntries: 65536 },
  throttle: { name: 'ma_throttle', maxEntries: 65536 },
  signals: { name: 'ma_signals', bytes: 1024 * 1024 },
  counters: { name: 'ma_counters', maxEntries: VERDICT_NAMES.length },
  config: { name: 'ma_config', maxEntries: 1 },
  generation: { name: 'ma_generation', maxEntries: 1 },
  flowCache: { name: 'ma_flow_cache', maxEntries: 4 << 8 },
} as const;

/** Program names of bpf/meshauth.bpf.c. */
export const PROGRAMS = {
  tcEgress: 'meshauth_tc_egress',
  tcIngress: 'meshauth_tc_ingress',
  cgroupEgress: 'ma_cgrp_egress',
  cgroupIngress: 'ma_cgrp_ingress',
  sockOps: 'ma_sockops',
} as const;

/** BPF_MAP_TYPE_* values used by meshauth. */
export const MapType = {
  Hash: 1,
  Array: 2,
  PercpuArray: 6,
  LruHash: 9,
  LpmTrie: 11,
  Ringbuf: 27,
} as const;
