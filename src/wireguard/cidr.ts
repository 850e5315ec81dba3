import { isIPv4, isIPv6 } from 'node:net';
import { WireguardError } from './errors.js';

/** An IP prefix in canonical form: the network address (host bits cleared) as `wg` and `ip` print it. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly text: string;
}

/**
 * Parses "10.1.2.3/24", "fd00::1/64" or a bare address (taken as /32 or /128) and returns the
 * canonical prefix ("10.1.2.0/24"), with IPv6 compressed the way inet_ntop does.
 */
export function parseCidr(input: string): Cidr {
  const slash = input.indexOf('/');
  const addr = slash < 0 ? input : input.slice(0, slash);
  const family = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : 0;
  if (family === 0) throw invalid(input, 'not an IP address');
  const bits = family === 4 ? 32 : 128;
  let len = bits;
  if (slash >= 0) {
    const lenText = input.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) throw invalid(input, `bad prefix length`);
    len = Number(lenText);
  }
  const bytes = family === 4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  const text = `${family === 4 ? bytes.join('.') : formatIpv6(bytes)}/${len}`;
  return { family, text };
}

/** Canonical text of a prefix (see parseCidr). */
export function canonicalCidr(input: string): string {
  return parseCidr(input).text;
}

/** Canonical text of a bare IP address ("fd00:0::1" → "fd00::1"). */
export function canonicalAddress(input: string): string {
  if (isIPv4(input)) return ipv4Bytes(input).join('.');
  if (isIPv6(input)) return formatIpv6(ipv6Bytes(input));
  throw invalid(input, 'not an IP address');
}

/** Formats an endpoint as `wg` prints it: "1.2.3.4:51820" or "[fd00::1]:51820". */
export function formatEndpoint(address: string, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
      `format WireGuard endpoint: bad port ${port}`,
    );
  }
  const a = canonicalAddress(address);
  return isIPv6(a) ? `[${a}]:${port}` : `${a}:${port}`;
}

/** Parses "host:port" / "[v6]:port" with an IP literal host; returns the canonical form. */
export function canonicalEndpoint(endpoint: string): string {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(endpoint) ?? /^([^:[\]]+):(\d+)$/.exec(endpoint);
  if (m === null || m[1] === undefined || m[2] === undefined) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
      `parse WireGuard endpoint ${JSON.stringify(endpoint)}: expected <ip>:<port> or [<ipv6>]:<port>`,
    );
  }
  if (!isIPv4(m[1]) && !isIPv6(m[1])) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
      `parse WireGuard endpoint ${JSON.stringify(endpoint)}: host must be an IP address`,
    );
  }
  return formatEndpoint(m[1], Number(m[2]));
}

function invalid(input: string, why: string): WireguardError {
  return new WireguardError(
    'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
    `parse IP prefix ${JSON.stringify(input)}: ${why}`,
  );
}

function ipv4Bytes(addr: string): number[] {
  return addr.split('.').map(Number);
}

function ipv6Bytes(addr: string): number[] {
  let text = addr;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = ipv4Bytes(text.slice(lastColon + 1));
    tail = [((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0)];
    text = `${text.slice(0, lastColon + 1)}0:0`;
    // the placeholder words are replaced below
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const h = parse(head);
  const r = rest === undefined ? [] : parse(rest);
  const words = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  if (tail.length === 2) words.splice(6, 2, ...tail);
  const bytes: number[] = [];
  for (const w of words) bytes.push((w >> 8) & 0xff, w & 0xff);
  return bytes;
}

/** IPv6 text like glibc inet_ntop: lowercase, longest run (>= 2) of zero words compressed, leftmost on ties. */
function formatIpv6(bytes: readonly number[]): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  // IPv4-compatible and IPv4-mapped forms, printed with a dotted tail as inet_ntop does
  if (
    bestStart === 0 &&
    (bestLen === 6 || (bestLen === 7 && words[7] !== 1) || (bestLen === 5 && words[5] === 0xffff))
  ) {
    const prefix = bestLen === 5 ? '::ffff:' : '::';
    return `${prefix}${bytes.slice(12).join('.')}`;
  }
  const parts: string[] = [];
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      parts.push(i === 0 ? ':' : '');
      i += bestLen - 1;
      if (i === 7) parts.push('');
      continue;
    }
    parts.push((words[i] ?? 0).toString(16));
  }
  return parts.join(':');
}
