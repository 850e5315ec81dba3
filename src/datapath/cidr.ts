import { isIPv4, isIPv6 } from 'node:net';
import { DatapathInputError } from './errors.js';

/** An LPM trie key: prefix length over a 16-byte address (IPv4 as ::ffff:a.b.c.d, prefix + 96). */
export interface LpmPrefix {
  prefixlen: number;
  addr: Buffer;
}

/** 16 bytes of an IPv4 (as IPv4-mapped IPv6) or IPv6 address. */
export function addressBytes(ip: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv4(ip)) {
    out[10] = 0xff;
    out[11] = 0xff;
    ip.split('.').forEach((p, i) => (out[12 + i] = Number(p)));
    return out;
  }
  if (!isIPv6(ip)) throw new DatapathInputError('parse address', `not an IP address: ${JSON.stringify(ip)}`);
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // A trailing dotted quad ("::ffff:10.0.0.1") becomes two hex groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const q = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const [head, rest] = text.includes('::') ? (text.split('::') as [string, string]) : [text, undefined];
  const h = head === '' ? [] : head.split(':');
  const r = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Parses "10.0.1.0/24", "10.0.1.5" (= /32), "fd00::/64" into a canonical LPM prefix (host bits cleared). */
export function parseCidr(cidr: string): LpmPrefix {
  const slash = cidr.indexOf('/');
  const ip = slash < 0 ? cidr : cidr.slice(0, slash);
  const v4 = isIPv4(ip);
  const max = v4 ? 32 : 128;
  const lenText = slash < 0 ? String(max) : cidr.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) {
    throw new DatapathInputError('parse cidr', `bad prefix length in ${JSON.stringify(cidr)}`);
  }
  const addr = addressBytes(ip);
  const prefixlen = Number(lenText) + (v4 ? 96 : 0);
  maskHostBits(addr, prefixlen);
  return { prefixlen, addr };
}

function maskHostBits(addr: Buffer, prefixlen: number): void {
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, prefixlen - i * 8));
    addr[i] = addr[i]! & ((0xff << (8 - bits)) & 0xff);
  }
}

function isV4Mapped(addr: Buffer): boolean {
  for (let i = 0; i < 10; i++) if (addr[i] !== 0) return false;
  return addr[10] === 0xff && addr[11] === 0xff;
}

/** Canonical text of an LPM prefix: "10.0.1.0/24" for IPv4-mapped prefixes of >= 96 bits, else IPv6. */
export function formatCidr(p: LpmPrefix): string {
  if (p.prefixlen >= 96 && isV4Mapped(p.addr)) {
    return `${p.addr[12]}.${p.addr[13]}.${p.addr[14]}.${p.addr[15]}/${p.prefixlen - 96}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(p.addr.readUInt16BE(i * 2).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const text =
    best < 0
      ? groups.join(':')
      : `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
  return `${text}/${p.prefixlen}`;
}
