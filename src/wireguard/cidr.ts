import { formatIp, formatPrefix, parseIp, parsePrefix } from '../net/index.js';
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
  const p = parsePrefix(input, { bareAddress: true, hostBits: 'clear' });
  if (!p.ok) throw invalid(input, p.kind === 'bad-prefix-length' ? 'bad prefix length' : p.reason);
  return { family: p.value.family, text: formatPrefix(p.value, 'inet_ntop') };
}

/** Canonical text of a prefix (see parseCidr). */
export function canonicalCidr(input: string): string {
  return parseCidr(input).text;
}

/** Canonical text of a bare IP address ("fd00:0::1" → "fd00::1"). */
export function canonicalAddress(input: string): string {
  const ip = parseIp(input);
  if (!ip.ok) throw invalid(input, ip.reason);
  return formatIp(ip.value, 'inet_ntop');
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
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
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
  const host = parseIp(m[1]);
  if (!host.ok) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
      `parse WireGuard endpoint ${JSON.stringify(endpoint)}: host must be an IP address${host.kind === 'zone' ? ' without a zone' : ''}`,
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
