import { describe, expect, it } from 'vitest';
import {
  wire,
  parseCidr,
  formatCidr,
  addressBytes,
  DatapathInputError,
} from '../../../src/datapath/index.js';

describe('wire codecs mirror bpf/meshauth.h', () => {
  it('have the C struct sizes', () => {
    expect(wire.ipcacheKey.size).toBe(20);
    expect(wire.ipcacheValue.size).toBe(8);
    expect(wire.hostKey.size).toBe(16);
    expect(wire.policyKey.size).toBe(8);
    expect(wire.policyValue.size).toBe(4);
    expect(wire.authKey.size).toBe(16);
    expect(wire.authValue.size).toBe(8);
    expect(wire.signal.size).toBe(160);
    expect(wire.config.size).toBe(24);
    expect(wire.VERDICT_NAMES).toHaveLength(14);
  });

  it('encode to exactly size bytes', () => {
    expect(wire.authKey.encode({ localId: 1, remoteId: 2, remoteNode: 3, authType: 1 })).toHaveLength(16);
    expect(wire.ipcacheKey.encode('10.0.0.1/32')).toHaveLength(20);
    expect(
      wire.signal.encode({
        localId: 1,
        remoteId: 2,
        remoteNode: 3,
        authType: 1,
        direction: 'ingress',
        permissive: false,
        unresolved: false,
        bootNs: 5n,
      }),
    ).toHaveLength(160);
  });

  it('lay out the auth key as u32 u32 u32 u8 pad[3], little-endian', () => {
    const b = wire.authKey.encode({ localId: 0x01020304, remoteId: 5, remoteNode: 6, authType: 1 });
    expect(b.toString('hex')).toBe('04030201' + '05000000' + '06000000' + '01000000');
  });

  it('round-trip every struct', () => {
    const key = { localId: 4294967295, remoteId: 7, remoteNode: 9, authType: 1 };
    expect(wire.authKey.decode(wire.authKey.encode(key))).toEqual(key);
    expect(wire.authValue.decode(wire.authValue.encode({ expiryBootNs: 123456789012345n }))).toEqual({
      expiryBootNs: 123456789012345n,
    });
    expect(wire.policyKey.decode(wire.policyKey.encode({ localId: 3, remoteId: 0 }))).toEqual({
      localId: 3,
      remoteId: 0,
    });
    for (const mode of ['enforce', 'permissive'] as const) {
      expect(wire.policyValue.decode(wire.policyValue.encode({ authType: 1, mode }))).toEqual({
        authType: 1,
        mode,
      });
    }
    expect(wire.ipcacheValue.decode(wire.ipcacheValue.encode({ identity: 11, nodeId: 2 }))).toEqual({
      identity: 11,
      nodeId: 2,
    });
    const sig = {
      localId: 1,
      remoteId: 2,
      remoteNode: 3,
      authType: 1,
      direction: 'ingress' as const,
      permissive: true,
      unresolved: true,
      bootNs: 99n,
    };
    expect(wire.signal.decode(wire.signal.encode(sig))).toEqual(sig);
    const cfg = {
      throttleNs: 250_000_000n,
      wgIfindex: 7,
      flags: wire.FLAG_STRICT_WIREGUARD,
      synRtoMs: 40,
      hz: 1000,
    };
    expect(wire.config.decode(wire.config.encode(cfg))).toEqual(cfg);
  });

  it('lay out ma_config as u64 throttle_ns, u32 wg_ifindex, u32 flags, u32 syn_rto_ms, u32 hz', () => {
    const b = wire.config.encode({ throttleNs: 1n, wgIfindex: 2, flags: 3, synRtoMs: 50, hz: 250 });
    expect(b.toString('hex')).toBe('0100000000000000' + '02000000' + '03000000' + '32000000' + 'fa000000');
  });

  it('lay out ma_flow_cache_slot as u64 seq, generation, expiry_boot_ns, then src[16] dst[16] u32 ifindex u32 pad', () => {
    const src = Buffer.alloc(16, 0xaa);
    const dst = Buffer.alloc(16, 0xbb);
    const slot = {
      seq: 2n,
      generation: 0x0102030405060708n,
      expiryBootNs: 9n,
      key: { src, dst, ifindex: 7 },
    };
    const b = wire.flowCacheSlot.encode(slot);
    expect(b).toHaveLength(64);
    expect(b.readBigUInt64LE(0)).toBe(2n);
    expect(b.readBigUInt64LE(8)).toBe(0x0102030405060708n);
    expect(b.readBigUInt64LE(16)).toBe(9n);
    expect(b.subarray(24, 40)).toEqual(src);
    expect(b.subarray(40, 56)).toEqual(dst);
    expect(b.readUInt32LE(56)).toBe(7);
    expect(b.readUInt32LE(60)).toBe(0);
    expect(wire.flowCacheSlot.decode(b)).toEqual(slot);
    expect(() =>
      wire.flowCacheSlot.encode({ ...slot, key: { src: Buffer.alloc(4), dst, ifindex: 0 } }),
    ).toThrow(DatapathInputError);
    expect(() => wire.flowCacheSlot.decode(Buffer.alloc(63))).toThrow(DatapathInputError);
    expect(wire.FLOW_CACHE_PROGRAMS).toEqual({
      tcEgress: 0,
      tcIngress: 1,
      cgroupEgress: 2,
      cgroupIngress: 3,
    });
    // program p's slots are p * 2^bits .. (p + 1) * 2^bits - 1
    const key = { src, dst, ifindex: 0 };
    expect(wire.flowCacheIndex('cgroupIngress', key) >> wire.FLOW_CACHE_BITS).toBe(3);
    expect(wire.flowCacheIndex('tcEgress', key) >> wire.FLOW_CACHE_BITS).toBe(0);
    expect(wire.flowCacheIndex('tcIngress', key) & 0xff).toBe(wire.flowCacheIndex('tcEgress', key));
  });

  it('keep existing verdict indexes and append new verdicts last', () => {
    expect(wire.VERDICT_NAMES.indexOf('signal_ringbuf_full')).toBe(9);
    expect(wire.VERDICT_NAMES.indexOf('syn_rto_shortened')).toBe(10);
    expect(wire.VERDICT_NAMES.indexOf('drop_unparsed_encap')).toBe(11);
    expect(wire.VERDICT_NAMES.indexOf('pass_permissive')).toBe(12);
    expect(wire.VERDICT_NAMES.indexOf('drop_unresolved_pod_ip')).toBe(13);
    expect(wire.MAPS.counters.maxEntries).toBe(14);
  });

  it('lay out ma_policy_value as u8 auth_type, u8 mode, u8 pad[2]', () => {
    expect(wire.policyValue.encode({ authType: 1, mode: 'enforce' }).toString('hex')).toBe('01000000');
    expect(wire.policyValue.encode({ authType: 1, mode: 'permissive' }).toString('hex')).toBe('01010000');
  });

  it('read the signal flags byte at offset 14 (MA_SIG_PERMISSIVE 1, MA_SIG_UNRESOLVED 2)', () => {
    const b = Buffer.alloc(wire.signal.size);
    b[14] = 1;
    expect(wire.signal.decode(b)).toMatchObject({ permissive: true, unresolved: false });
    b[14] = 2;
    expect(wire.signal.decode(b)).toMatchObject({ permissive: false, unresolved: true });
    const e = wire.signal.encode({
      localId: 0,
      remoteId: 0xffffffff,
      remoteNode: 0,
      authType: 1,
      direction: 'egress',
      permissive: true,
      unresolved: true,
      bootNs: 0n,
    });
    expect(e[14]).toBe(3);
  });

  it('decode signal direction bytes 0 and 1 and read boot_ns at offset 16', () => {
    const b = Buffer.alloc(wire.signal.size);
    b.writeUInt32LE(10, 0);
    b[13] = 0;
    b.writeBigUInt64LE(42n, 16);
    expect(wire.signal.decode(b)).toMatchObject({ localId: 10, direction: 'egress', bootNs: 42n });
    b[13] = 1;
    expect(wire.signal.decode(b).direction).toBe('ingress');
  });

  it('carry a dropped SYN: syn_len (u16) at offset 24, its bytes from offset 32', () => {
    const syn = Buffer.from(Array.from({ length: 60 }, (_, i) => i + 1));
    const sig = {
      localId: 1,
      remoteId: 2,
      remoteNode: 3,
      authType: 1,
      direction: 'egress' as const,
      permissive: false,
      unresolved: false,
      bootNs: 7n,
      syn,
    };
    const b = wire.signal.encode(sig);
    expect(b.readUInt16LE(24)).toBe(60);
    expect(b.subarray(32, 92)).toEqual(syn);
    expect(b.subarray(92).every((x) => x === 0)).toBe(true);
    expect(wire.signal.decode(b)).toEqual(sig);
    // The decoded bytes are a copy: the ring buffer's memory is reused after the callback.
    b[32] = 0xff;
    expect(wire.signal.decode(wire.signal.encode(sig)).syn![0]).toBe(1);
    // syn_len 0, or above MA_SYN_MAX (never written by the datapath): no SYN
    b.writeUInt16LE(0, 24);
    expect(wire.signal.decode(b).syn).toBeUndefined();
    b.writeUInt16LE(wire.SYN_MAX + 1, 24);
    expect(wire.signal.decode(b).syn).toBeUndefined();
    expect(() => wire.signal.encode({ ...sig, syn: Buffer.alloc(wire.SYN_MAX + 1) })).toThrow(RangeError);
  });

  it('reject out-of-range fields and short buffers', () => {
    expect(() => wire.authKey.encode({ localId: -1, remoteId: 0, remoteNode: 0, authType: 1 })).toThrow(
      DatapathInputError,
    );
    expect(() => wire.authKey.encode({ localId: 1, remoteId: 0, remoteNode: 0, authType: 256 })).toThrow(
      /u8/,
    );
    expect(() => wire.ipcacheValue.encode({ identity: 2 ** 32, nodeId: 0 })).toThrow(/u32/);
    expect(() => wire.signal.decode(Buffer.alloc(159))).toThrow(/need 160 bytes/);
  });
});

describe('CIDR to LPM key', () => {
  it('stores IPv4 as IPv4-mapped IPv6 with prefixlen + 96', () => {
    const k = wire.ipcacheKey.encode('10.1.2.3/32');
    expect(k.readUInt32LE(0)).toBe(128);
    expect(k.subarray(4).toString('hex')).toBe('00000000000000000000ffff0a010203');
    expect(wire.ipcacheKey.encode('10.1.0.0/16').readUInt32LE(0)).toBe(112);
  });

  it('treats a bare address as a host prefix', () => {
    expect(parseCidr('192.168.1.1').prefixlen).toBe(128);
    expect(parseCidr('fd00::1').prefixlen).toBe(128);
  });

  it('clears host bits and prints the canonical form', () => {
    expect(formatCidr(parseCidr('10.1.2.3/24'))).toBe('10.1.2.0/24');
    expect(formatCidr(parseCidr('fd00:1:2:3::9/64'))).toBe('fd00:1:2:3::/64');
    expect(formatCidr(parseCidr('fd00::1'))).toBe('fd00::1/128');
    expect(formatCidr(parseCidr('::/0'))).toBe('::/0');
    expect(formatCidr(parseCidr('2001:db8:0:0:1:0:0:1/128'))).toBe('2001:db8::1:0:0:1/128');
  });

  it('encodes host keys as the 16 address bytes of the matching full-length LPM key', () => {
    for (const c of ['10.1.2.3', '10.1.2.3/32', 'fd00:0:0:1::5', 'fd00::5/128', '::ffff:10.0.0.1']) {
      expect(wire.hostKey.encode(c)).toEqual(wire.ipcacheKey.encode(c).subarray(4));
      expect(wire.hostKey.decode(wire.hostKey.encode(c))).toBe(formatCidr(parseCidr(c)));
    }
    expect(wire.hostKey.decode(wire.hostKey.encode('10.1.2.3'))).toBe('10.1.2.3/32');
  });

  it('rejects a prefix shorter than a host as a host key', () => {
    expect(() => wire.hostKey.encode('10.1.2.0/24')).toThrow(DatapathInputError);
    expect(() => wire.hostKey.encode('fd00::/127')).toThrow(/not a host address/);
  });

  it('round-trips through the key codec', () => {
    for (const c of ['10.0.0.0/8', '10.1.2.3/32', '0.0.0.0/0', 'fd00::/8', 'fd00:0:0:1::5/128']) {
      expect(wire.ipcacheKey.decode(wire.ipcacheKey.encode(c))).toBe(formatCidr(parseCidr(c)));
    }
  });

  it('parses IPv6 forms including embedded IPv4', () => {
    expect(addressBytes('::ffff:10.0.0.1').toString('hex')).toBe('00000000000000000000ffff0a000001');
    expect(addressBytes('fe80::1%eth0').toString('hex')).toBe('fe800000000000000000000000000001');
  });

  it('rejects malformed input', () => {
    expect(() => parseCidr('10.0.0.0/33')).toThrow(DatapathInputError);
    expect(() => parseCidr('fd00::/129')).toThrow(/prefix length/);
    expect(() => parseCidr('nope/8')).toThrow(/not an IP address/);
    expect(() => parseCidr('10.0.0.0/x')).toThrow(/prefix length/);
  });
});
