/** Crafted packets for BPF_PROG_TEST_RUN (tests and benchmarks). */
import { isIPv4 } from 'node:net';
import { addressBytes } from './cidr.js';

export interface TcpSynOptions {
  src: string;
  dst: string;
  srcPort?: number;
  dstPort?: number;
  /** Prepend a 14-byte Ethernet header (default true; tc and cgroup_skb test runs need it). */
  ethernet?: boolean;
  /**
   * In-band VLAN tags between the Ethernet header and IP, outermost first, by TPID (0x8100 for
   * 802.1Q, 0x88a8 for 802.1ad); each tag gets VID 100 + its position.
   */
  vlanTags?: number[];
}

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;

function checksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

function tcpSyn(srcPort: number, dstPort: number): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(srcPort, 0);
  t.writeUInt16BE(dstPort, 2);
  t.writeUInt32BE(1, 4); // seq
  t[12] = 5 << 4; // data offset
  t[13] = 0x02; // SYN
  t.writeUInt16BE(64240, 14); // window
  return t;
}

function ethernet(proto: number): Buffer {
  const e = Buffer.alloc(14);
  Buffer.from([0x02, 0, 0, 0, 0, 2]).copy(e, 0);
  Buffer.from([0x02, 0, 0, 0, 0, 1]).copy(e, 6);
  e.writeUInt16BE(proto, 12);
  return e;
}

/** A TCP SYN from src to dst (IPv4 or IPv6), optionally behind an Ethernet header. */
export function buildTcpSyn(opts: TcpSynOptions): Buffer {
  const tcp = tcpSyn(opts.srcPort ?? 40000, opts.dstPort ?? 80);
  const withEth = opts.ethernet ?? true;
  let ip: Buffer;
  let proto: number;
  if (isIPv4(opts.src)) {
    proto = ETH_P_IP;
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + tcp.length, 2);
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    addressBytes(opts.src).copy(ip, 12, 12, 16);
    addressBytes(opts.dst).copy(ip, 16, 12, 16);
    ip.writeUInt16BE(checksum(ip), 10);
  } else {
    proto = ETH_P_IPV6;
    ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip.writeUInt16BE(tcp.length, 4);
    ip[6] = 6;
    ip[7] = 64;
    addressBytes(opts.src).copy(ip, 8);
    addressBytes(opts.dst).copy(ip, 24);
  }
  if (!withEth) return Buffer.concat([ip, tcp]);
  const tags = opts.vlanTags ?? [];
  const parts: Buffer[] = [ethernet(tags[0] ?? proto)];
  tags.forEach((_tpid, i) => {
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(100 + i, 0); // PCP 0, DEI 0, VID
    tag.writeUInt16BE(tags[i + 1] ?? proto, 2);
    parts.push(tag);
  });
  return Buffer.concat([...parts, ip, tcp]);
}

/** A TCP SYN (IPv4 or IPv6) behind one MPLS label (bottom of stack), behind an Ethernet header. */
export function buildMplsTcpSyn(opts: Omit<TcpSynOptions, 'ethernet' | 'vlanTags'>): Buffer {
  const label = Buffer.alloc(4);
  label.writeUInt32BE((16 << 12) | (1 << 8) | 64); // label 16, S=1, TTL 64
  return Buffer.concat([ethernet(0x8847), label, buildTcpSyn({ ...opts, ethernet: false })]);
}

/** An ARP request behind an Ethernet header (a non-IP packet). */
export function buildArp(): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0);
  arp.writeUInt16BE(ETH_P_IP, 2);
  arp[4] = 6;
  arp[5] = 4;
  arp.writeUInt16BE(1, 6);
  return Buffer.concat([ethernet(0x0806), arp]);
}
