import { isIP } from 'node:net';

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

/** Normalizes an IP address (IPv4-mapped IPv6 becomes IPv4); undefined when not an address. */
export function normalizeIp(input: string): string | undefined {
  const s = input.trim();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(s);
  if (mapped && isIP(mapped[1] as string) === 4) return mapped[1];
  const family = isIP(s);
  if (family === 4)
    return s
      .split('.')
      .map((o) => String(Number(o)))
      .join('.');
  if (family === 6) return ipv6ToString(ipv6ToBigInt(s));
  return undefined;
}

export interface Cidr {
  /** Canonical form, e.g. "10.0.1.0/24", "fd00::/64". */
  text: string;
  family: 4 | 6;
  /** Network address as an integer (host bits zero). */
  network: bigint;
  prefix: number;
}

function ipv4ToBigInt(ip: string): bigint {
  return ip.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
}

function ipv6ToBigInt(ip: string): bigint {
  let s = ip;
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4tail) {
    const v = ipv4ToBigInt(v4tail[1] as string);
    s = `${s.slice(0, -(v4tail[1] as string).length)}${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function ipv6ToString(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  // Longest run of zero groups (length >= 2) becomes "::".
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Integer value and family of an IP address; undefined when not an address. */
export function ipToBigInt(input: string): { family: 4 | 6; value: bigint } | undefined {
  const ip = normalizeIp(input);
  if (ip === undefined) return undefined;
  return isIP(ip) === 4 ? { family: 4, value: ipv4ToBigInt(ip) } : { family: 6, value: ipv6ToBigInt(ip) };
}

/**
 * Parses "addr/prefix". Host bits must be zero ("10.0.1.5/24" is rejected: it is almost always a
 * typo for a host address or for the network).
 */
export function parseCidr(input: string): Cidr | undefined {
  const slash = input.indexOf('/');
  if (slash < 0) return undefined;
  const addr = ipToBigInt(input.slice(0, slash));
  const prefixText = input.slice(slash + 1);
  if (!addr || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const bits = addr.family === 4 ? 32 : 128;
  if (prefix > bits) return undefined;
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((addr.value & hostMask) !== 0n) return undefined;
  const addrText =
    addr.family === 4
      ? [24n, 16n, 8n, 0n].map((s) => String((addr.value >> s) & 0xffn)).join('.')
      : ipv6ToString(addr.value);
  return { text: `${addrText}/${prefix}`, family: addr.family, network: addr.value, prefix };
}

/** Whether an address lies in a CIDR (same family only). */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  const addr = ipToBigInt(ip);
  if (!addr || addr.family !== cidr.family) return false;
  const bits = cidr.family === 4 ? 32 : 128;
  return addr.value >> BigInt(bits - cidr.prefix) === cidr.network >> BigInt(bits - cidr.prefix);
}

/** The host route of an address: "10.0.1.5/32" or "fd00::5/128". */
export function hostCidr(ip: string): string {
  const n = normalizeIp(ip);
  if (n === undefined) throw new TypeError(`hostCidr: not an IP address: ${ip}`);
  return isIP(n) === 4 ? `${n}/32` : `${n}/128`;
}

const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/**
 * Strict SPIFFE ID check (SPIFFE ID spec): "spiffe://" + lower-case trust domain of [a-z0-9._-] +
 * path of segments of [A-Za-z0-9._-] (no empty, "." or ".." segments, no trailing slash), no
 * query, fragment, port or user info, at most 2048 bytes. Returns the reason when invalid.
 * `requirePath` rejects trust-domain-only IDs (workloads always have a path).
 */
export function spiffeIdProblem(input: string, requirePath = true): string | undefined {
  if (Buffer.byteLength(input) > 2048) return 'is longer than 2048 bytes';
  if (!input.startsWith('spiffe://')) return 'must start with "spiffe://"';
  const rest = input.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (td === '') return 'has an empty trust domain';
  if (!TRUST_DOMAIN_RE.test(td)) return `has an invalid trust domain "${td}" (allowed: a-z 0-9 . - _)`;
  if (slash < 0)
    return requirePath ? 'has no path (a workload ID looks like spiffe://<trust-domain>/<path>)' : undefined;
  const segments = rest.slice(slash + 1).split('/');
  for (const seg of segments) {
    if (seg === '') return 'has an empty path segment (or a trailing slash)';
    if (seg === '.' || seg === '..') return 'has a "." or ".." path segment';
    if (!SEGMENT_RE.test(seg)) return `has an invalid path segment "${seg}" (allowed: A-Z a-z 0-9 . - _)`;
  }
  return undefined;
}

/** Trust domain of a valid SPIFFE ID. */
export function trustDomainOf(spiffeId: string): string {
  const rest = spiffeId.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? rest : rest.slice(0, slash);
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

function levenshtein(a: string, b: string): number {
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
