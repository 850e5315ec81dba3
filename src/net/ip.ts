import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * IP addresses and prefixes for configuration, inventory, the datapath's LPM keys and WireGuard
 * AllowedIPs. Parsing, masking, membership and RFC 5952 text come from ipaddr.js; the accepted
 * syntax is the strict one of node:net `isIP` (dotted quads without leading zeros, since
 * ipaddr.js would read "010.0.0.1" as octal, and no shortened or hex IPv4 forms).
 */

export type IpFamily = 4 | 6;

/** An IP address: 4 bytes (IPv4) or 16 bytes (IPv6), network byte order. */
export interface IpAddress {
  readonly family: IpFamily;
  readonly bytes: readonly number[];
  /** RFC 4007 zone ("eth0" in "fe80::1%eth0"), when the text had one. */
  readonly zone?: string;
}

/** An IP prefix (RFC 4632 CIDR block): the network address with every host bit zero. */
export interface IpPrefix {
  readonly family: IpFamily;
  /** Network address bytes (4 or 16), host bits zero. */
  readonly bytes: readonly number[];
  /** 0..32 (IPv4) or 0..128 (IPv6). */
  readonly length: number;
}

export type IpProblemKind = 'not-an-address' | 'zone' | 'bad-prefix-length' | 'host-bits-set';

/** Why a text is not an acceptable address or prefix; `reason` is a phrase for error messages. */
export interface IpProblem {
  readonly kind: IpProblemKind;
  readonly reason: string;
}

export type IpResult<T> = { ok: true; value: T } | ({ ok: false } & IpProblem);

function problem(kind: IpProblemKind, reason: string): { ok: false } & IpProblem {
  return { ok: false, kind, reason };
}

/** Bits in an address of the family. */
export function familyBits(family: IpFamily): 32 | 128 {
  return family === 4 ? 32 : 128;
}

export interface ParseIpOptions {
  /** What to do with an RFC 4007 zone ("%eth0"): refuse it (default) or keep it in `zone`. */
  zone?: 'reject' | 'keep';
}

/**
 * Parses an IPv4 or IPv6 address. Surrounding white space is not accepted. An IPv4-mapped IPv6
 * address ("::ffff:10.0.0.1") stays IPv6 here; see `unmapIpv4`.
 */
export function parseIp(text: string, opts: ParseIpOptions = {}): IpResult<IpAddress> {
  const family = isIP(text);
  if (family === 0) return problem('not-an-address', 'not an IP address');
  const parsed = ipaddr.parse(family === 6 ? dottedTailInHex(text) : text);
  if (parsed.kind() === 'ipv6') {
    const zone = (parsed as ipaddr.IPv6).zoneId;
    if (zone !== undefined) {
      if (opts.zone !== 'keep') return problem('zone', `has a zone ("%${zone}"), which is not allowed here`);
      return { ok: true, value: { family: 6, bytes: parsed.toByteArray(), zone } };
    }
  }
  return { ok: true, value: { family: family as IpFamily, bytes: parsed.toByteArray() } };
}

/**
 * "::10.1.2.3" with the last 32 bits in hex ("::a01:203"). ipaddr.js reads the dotted form of an
 * IPv4-compatible address (RFC 4291 2.5.5.1) as IPv4-mapped; inet_pton, the kernel and `wg` read
 * it as written, so the tail is handed over in hex, which ipaddr.js takes literally. The text
 * has already passed node:net's strict check.
 */
function dottedTailInHex(text: string): string {
  const pct = text.indexOf('%');
  const addr = pct < 0 ? text : text.slice(0, pct);
  const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(addr);
  if (!m) return text;
  const [a, b, c, d] = [m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number];
  const hex = `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  return `${m[1]}${hex}${pct < 0 ? '' : text.slice(pct)}`;
}

/** An IPv4-mapped IPv6 address (RFC 4291 2.5.5.2) as the IPv4 address; any other as it is. */
export function unmapIpv4(addr: IpAddress): IpAddress {
  if (addr.family !== 6) return addr;
  const v6 = ipaddr.fromByteArray([...addr.bytes]) as ipaddr.IPv6;
  if (!v6.isIPv4MappedAddress()) return addr;
  return { family: 4, bytes: v6.toIPv4Address().toByteArray() };
}

/** The 16-byte form the datapath keys use: IPv6 as it is, IPv4 as IPv4-mapped IPv6. */
export function toIpv6Bytes(addr: Pick<IpAddress, 'family' | 'bytes'>): Buffer {
  if (addr.family === 6) return Buffer.from(addr.bytes);
  return Buffer.from(ipaddr.IPv4.parse(ipv4Text(addr.bytes)).toIPv4MappedAddress().toByteArray());
}

/**
 * Text of an address. 'rfc5952' is the RFC 5952 recommended form (lower case, the longest run of
 * two or more zero groups shortened to "::", the leftmost on ties); 'inet_ntop' is what glibc's
 * inet_ntop prints, which `wg` and `ip` show: the same, except that IPv4-mapped and
 * IPv4-compatible addresses end in a dotted quad.
 */
export function formatIp(
  addr: Pick<IpAddress, 'family' | 'bytes'>,
  style: 'rfc5952' | 'inet_ntop' = 'rfc5952',
): string {
  if (addr.family === 4) return ipv4Text(addr.bytes);
  const v6 = ipaddr.fromByteArray([...addr.bytes]) as ipaddr.IPv6;
  if (style === 'inet_ntop') {
    const dotted = inetNtopDottedPrefix(addr.bytes);
    if (dotted !== undefined) return `${dotted}${addr.bytes.slice(12).join('.')}`;
  }
  return v6.toRFC5952String();
}

/**
 * glibc inet_ntop prints the last 32 bits as a dotted quad when the longest zero run starts the
 * address and is 6 words long (IPv4-compatible, "::a.b.c.d"; not "::" or "::1"), 7 words long
 * with a last word other than 1 ("::0.0.0.2"), or 5 words followed by ffff (IPv4-mapped). ipaddr.js
 * has no such form; this rule is kept by hand because AllowedIPs must compare equal to `wg show`.
 */
function inetNtopDottedPrefix(bytes: readonly number[]): string | undefined {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  const leadingZeros = words.findIndex((w) => w !== 0);
  const run = leadingZeros < 0 ? 8 : leadingZeros;
  // the leading run must also be the longest (the leftmost wins ties, so >= against later runs)
  let longestLater = 0;
  for (let i = run; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    longestLater = Math.max(longestLater, j - i);
    i = j;
  }
  if (run < 2 || run < longestLater) return undefined;
  if (run === 6 || (run === 7 && words[7] !== 1)) return '::';
  if (run === 5 && words[5] === 0xffff) return '::ffff:';
  return undefined;
}

function ipv4Text(bytes: readonly number[]): string {
  return bytes.join('.');
}

export interface ParsePrefixOptions {
  /** Accept a bare address as the host prefix (/32 or /128). Default false. */
  bareAddress?: boolean;
  /** 'reject' (default): "10.0.1.5/24" is refused; 'clear': it means 10.0.1.0/24. */
  hostBits?: 'reject' | 'clear';
  /**
   * 'unmap': an IPv4-mapped address is the IPv4 address, its length counted in IPv4 bits
   * ("::ffff:10.0.0.0/8" is 10.0.0.0/8). Default 'keep': it is an IPv6 prefix.
   */
  mapped?: 'keep' | 'unmap';
}

/** Parses "addr/length" (RFC 4632 notation; IPv6 as in RFC 4291 2.3). Zones are refused. */
export function parsePrefix(text: string, opts: ParsePrefixOptions = {}): IpResult<IpPrefix> {
  const slash = text.indexOf('/');
  if (slash < 0 && !opts.bareAddress) return problem('bad-prefix-length', 'has no prefix length ("/<bits>")');
  const parsed = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!parsed.ok) return parsed;
  const addr = opts.mapped === 'unmap' ? unmapIpv4(parsed.value) : parsed.value;
  const bits = familyBits(addr.family);
  let length: number = bits;
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > bits) {
      return problem('bad-prefix-length', `bad prefix length (0..${bits})`);
    }
    length = Number(lengthText);
  }
  const mask = (addr.family === 4 ? ipaddr.IPv4 : ipaddr.IPv6)
    .subnetMaskFromPrefixLength(length)
    .toByteArray();
  const network = addr.bytes.map((b, i) => b & (mask[i] ?? 0));
  if (opts.hostBits !== 'clear' && network.some((b, i) => b !== addr.bytes[i])) {
    return problem('host-bits-set', 'has host bits set (the network address has zeros after the prefix)');
  }
  return { ok: true, value: { family: addr.family, bytes: network, length } };
}

/** "network/length" with the network address formatted as in formatIp. */
export function formatPrefix(prefix: IpPrefix, style: 'rfc5952' | 'inet_ntop' = 'rfc5952'): string {
  return `${formatIp(prefix, style)}/${prefix.length}`;
}

/** The host prefix of an address: /32 or /128. */
export function hostPrefix(addr: IpAddress): IpPrefix {
  return { family: addr.family, bytes: addr.bytes, length: familyBits(addr.family) };
}

/** Whether an address lies in a prefix. Families must match: no IPv4-mapped translation here. */
export function prefixContains(prefix: IpPrefix, addr: IpAddress): boolean {
  if (prefix.family !== addr.family) return false;
  const net = ipaddr.fromByteArray([...prefix.bytes]);
  const ip = ipaddr.fromByteArray([...addr.bytes]);
  return net.kind() === ip.kind() && (ip as ipaddr.IPv4).match(net as ipaddr.IPv4, prefix.length);
}

/** The address as an unsigned integer (network byte order). */
export function ipToBigInt(addr: Pick<IpAddress, 'bytes'>): bigint {
  return addr.bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

/**
 * Why an address cannot be one host's own unicast address (a pod's or a node's): "unspecified"
 * (0.0.0.0, ::), "loopback" (127.0.0.0/8, ::1), "multicast" (224.0.0.0/4, ff00::/8) or
 * "broadcast" (255.255.255.255), as ipaddr.js classifies them (RFC 6890 special-purpose
 * registries); undefined for any other address. IPv4-mapped IPv6 addresses are judged as IPv4.
 */
export function hostAddressProblem(
  addr: IpAddress,
): 'unspecified' | 'loopback' | 'multicast' | 'broadcast' | undefined {
  const range = ipaddr.fromByteArray([...unmapIpv4(addr).bytes]).range();
  return range === 'unspecified' || range === 'loopback' || range === 'multicast' || range === 'broadcast'
    ? range
    : undefined;
}
