import { WireguardError } from './errors.js';

/** The interface line of `wg show <if> dump`. */
export interface InterfaceState {
  /** Public key of the configured private key; undefined when no key is set. */
  readonly publicKey: string | undefined;
  /** True when a private key is configured (the dump's private key column is not "(none)"). */
  readonly hasPrivateKey: boolean;
  readonly listenPort: number;
  /** undefined when "off". */
  readonly fwmark: number | undefined;
}

/** One peer line of `wg show <if> dump`. */
export interface PeerState {
  readonly publicKey: string;
  readonly hasPresharedKey: boolean;
  /** "ip:port" / "[ip6]:port", undefined when "(none)". */
  readonly endpoint: string | undefined;
  /** Prefixes exactly as printed; empty when "(none)". */
  readonly allowedIPs: readonly string[];
  /** Wall-clock ms of the latest handshake; undefined when there was none. */
  readonly latestHandshakeMs: number | undefined;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Seconds; undefined when "off". */
  readonly persistentKeepaliveSec: number | undefined;
}

export interface DeviceState {
  readonly interface: InterfaceState;
  readonly peers: readonly PeerState[];
}

/**
 * Parses the output of `wg show <if> dump`: one tab-separated interface line (private key,
 * public key, listen port, fwmark) then one line per peer (public key, preshared key, endpoint,
 * allowed ips, latest handshake, transfer rx, transfer tx, persistent keepalive). Key material
 * from the private-key and preshared-key columns is never kept, only whether it is set.
 */
export function parseWgDump(text: string): DeviceState {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const first = lines[0];
  if (first === undefined) throw parseError('empty output');
  const f = first.split('\t');
  if (f.length !== 4) throw parseError(`interface line has ${f.length} fields, expected 4`);
  const iface: InterfaceState = {
    hasPrivateKey: f[0] !== '(none)',
    publicKey: f[1] === '(none)' ? undefined : f[1],
    listenPort: int(f[2], 'listen port'),
    fwmark: f[3] === 'off' ? undefined : fwmark(f[3]),
  };
  const peers = lines.slice(1).map((line, i): PeerState => {
    const p = line.split('\t');
    if (p.length !== 8) throw parseError(`peer line ${i + 1} has ${p.length} fields, expected 8`);
    const handshake = int(p[4], 'latest handshake');
    return {
      publicKey: p[0] ?? '',
      hasPresharedKey: p[1] !== '(none)',
      endpoint: p[2] === '(none)' ? undefined : p[2],
      allowedIPs: p[3] === '(none)' || p[3] === '' ? [] : (p[3] ?? '').split(','),
      latestHandshakeMs: handshake === 0 ? undefined : handshake * 1000,
      rxBytes: int(p[5], 'transfer rx'),
      txBytes: int(p[6], 'transfer tx'),
      persistentKeepaliveSec: p[7] === 'off' ? undefined : int(p[7], 'persistent keepalive'),
    };
  });
  return { interface: iface, peers };
}

function int(field: string | undefined, what: string): number {
  if (field === undefined || !/^\d+$/.test(field)) throw parseError(`bad ${what} ${JSON.stringify(field)}`);
  return Number(field);
}

function fwmark(field: string | undefined): number {
  if (field !== undefined && /^0x[0-9a-f]+$/i.test(field)) return parseInt(field.slice(2), 16);
  return int(field, 'fwmark');
}

function parseError(why: string): WireguardError {
  return new WireguardError('MESHAUTH_ERR_WIREGUARD_DUMP_PARSE', `parse wg show dump: ${why}`);
}
