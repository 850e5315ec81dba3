import {
  formatIp,
  formatPrefix,
  hostPrefix,
  ipToBigInt as bigIntOf,
  parseIp,
  parsePrefix,
  prefixContains,
  unmapIpv4,
} from '../net/index.js';
import { parseSpiffeId, spiffeIdProblem as libraryIdProblem } from '../spiffe/index.js';

/** Shows a rejected value in an error message: strings quoted, objects as JSON, shortened. */
export function showValue(value: unknown): string {
  let s: string;
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') s = JSON.stringify(value);
  else if (typeof value === 'number' || typeof value === 'boolean' || value === null) s = String(value);
  else if (Array.isArray(value)) s = 'a list';
  else if (typeof value === 'object') s = 'a mapping';
  else s = typeof value;
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * Normalizes an IP address: RFC 5952 text for IPv6, and an IPv4-mapped IPv6 address becomes the
 * IPv4 address (the datapath keys both the same way). Undefined when not an address; zones
 * ("fe80::1%eth0") are refused, since a node or workload address is not link-local.
 */
export function normalizeIp(input: string): string | undefined {
  const ip = parseIp(input.trim());
  return ip.ok ? formatIp(unmapIpv4(ip.value)) : undefined;
}

export interface Cidr {
  /** Canonical form, e.g. "10.0.1.0/24", "fd00::/64". */
  text: string;
  family: 4 | 6;
  /** Network address as an integer (host bits zero). */
  network: bigint;
  prefix: number;
}

/** Integer value and family of an IP address (IPv4-mapped as IPv4); undefined when not an address. */
export function ipToBigInt(input: string): { family: 4 | 6; value: bigint } | undefined {
  const ip = parseIp(input.trim());
  if (!ip.ok) return undefined;
  const addr = unmapIpv4(ip.value);
  return { family: addr.family, value: bigIntOf(addr) };
}

/**
 * Parses "addr/prefix". Host bits must be zero ("10.0.1.5/24" is rejected: it is almost always a
 * typo for a host address or for the network). An IPv4-mapped address counts as IPv4.
 */
export function parseCidr(input: string): Cidr | undefined {
  // white space around the address (not the length) is tolerated, as in normalizeIp
  const slash = input.indexOf('/');
  const text = slash < 0 ? input : `${input.slice(0, slash).trim()}${input.slice(slash)}`;
  const p = parsePrefix(text, { hostBits: 'reject', mapped: 'unmap' });
  if (!p.ok) return undefined;
  return {
    text: formatPrefix(p.value),
    family: p.value.family,
    network: bigIntOf(p.value),
    prefix: p.value.length,
  };
}

/** Whether an address lies in a CIDR (same family only; IPv4-mapped counts as IPv4). */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  let addr = parsedAddresses.get(ip);
  if (addr === undefined) {
    addr = parseIp(ip.trim());
    if (parsedAddresses.size >= MAX_PARSED_ADDRESSES) parsedAddresses.clear();
    parsedAddresses.set(ip, addr);
  }
  let prefix = parsedCidrs.get(cidr);
  if (prefix === undefined) parsedCidrs.set(cidr, (prefix = parsePrefix(cidr.text)));
  return addr.ok && prefix.ok && prefixContains(prefix.value, unmapIpv4(addr.value));
}

/**
 * Parsed prefix of each Cidr object cidrContains has seen: inventory checks test every pod address
 * against its node's CIDRs, and re-parsing the same text per address dominated a rebuild.
 */
const parsedCidrs = new WeakMap<Cidr, ReturnType<typeof parsePrefix>>();
/** Same for addresses (bounded: emptied when it outgrows MAX_PARSED_ADDRESSES; never mutated). */
const parsedAddresses = new Map<string, ReturnType<typeof parseIp>>();
const MAX_PARSED_ADDRESSES = 1 << 17;

/** The host route of an address: "10.0.1.5/32" or "fd00::5/128". */
export function hostCidr(ip: string): string {
  const addr = parseIp(ip.trim());
  if (!addr.ok) throw new TypeError(`hostCidr: not an IP address: ${ip}`);
  return formatPrefix(hostPrefix(unmapIpv4(addr.value)));
}

/**
 * The reason a SPIFFE ID is invalid (SPIFFE-ID spec, section 2), as the SPIFFE library words it,
 * or undefined when it is valid. `requirePath` also rejects trust-domain-only IDs
 * ("spiffe://example.org"): a workload's ID always has a path.
 */
export function spiffeIdProblem(input: string, requirePath = true): string | undefined {
  const problem = libraryIdProblem(input);
  if (problem !== undefined) return problem;
  if (requirePath && parseSpiffeId(input).isRoot) {
    return 'has no path (a workload ID looks like spiffe://<trust-domain>/<path>)';
  }
  return undefined;
}

/** Linux interface names: 1..15 bytes, no '/', whitespace or ':'. */
export function interfaceNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 15) return 'must be 1 to 15 characters';
  if (/[/\s:]/.test(name) || name === '.' || name === '..') return 'must not contain "/", ":" or spaces';
  return undefined;
}

/** Edit distance, for "did you mean" hints on unknown keys. */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(name.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/** Levenshtein distance between two strings. */
export function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min(
        (row[j] as number) + 1,
        (row[j - 1] as number) + 1,
        prev + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      prev = tmp;
    }
  }
  return row[b.length] as number;
}
