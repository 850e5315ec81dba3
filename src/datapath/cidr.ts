import { formatPrefix, parseIp, parsePrefix, toIpv6Bytes, unmapIpv4, type IpPrefix } from '../net/index.js';
import { DatapathInputError } from './errors.js';

/** An LPM trie key: prefix length over a 16-byte address (IPv4 as ::ffff:a.b.c.d, prefix + 96). */
export interface LpmPrefix {
  prefixlen: number;
  addr: Buffer;
}

/** 16 bytes of an IPv4 (as IPv4-mapped IPv6) or IPv6 address; a zone ("%eth0") is dropped. */
export function addressBytes(ip: string): Buffer {
  const parsed = parseIp(ip, { zone: 'keep' });
  if (!parsed.ok) throw new DatapathInputError('parse address', `not an IP address: ${JSON.stringify(ip)}`);
  return toIpv6Bytes(parsed.value);
}

/** Parses "10.0.1.0/24", "10.0.1.5" (= /32), "fd00::/64" into a canonical LPM prefix (host bits cleared). */
export function parseCidr(cidr: string): LpmPrefix {
  const p = parsePrefix(cidr, { bareAddress: true, hostBits: 'clear' });
  if (!p.ok) {
    if (p.kind === 'bad-prefix-length') {
      throw new DatapathInputError('parse cidr', `bad prefix length in ${JSON.stringify(cidr)}`);
    }
    throw new DatapathInputError('parse address', `not an IP address: ${JSON.stringify(cidr)} (${p.reason})`);
  }
  return { prefixlen: p.value.length + (p.value.family === 4 ? 96 : 0), addr: toIpv6Bytes(p.value) };
}

/** Canonical text of an LPM prefix: "10.0.1.0/24" for IPv4-mapped prefixes of >= 96 bits, else IPv6. */
export function formatCidr(p: LpmPrefix): string {
  const v6: IpPrefix = { family: 6, bytes: [...p.addr], length: p.prefixlen };
  if (p.prefixlen >= 96) {
    const v4 = unmapIpv4(v6);
    if (v4.family === 4) return formatPrefix({ ...v4, length: p.prefixlen - 96 });
  }
  return formatPrefix(v6);
}
