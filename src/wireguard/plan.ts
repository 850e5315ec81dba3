import { canonicalCidr, canonicalEndpoint } from './cidr.js';
import type { PeerState } from './dump.js';
import { WireguardError } from './errors.js';
import { isWireguardKey } from './keys.js';

/** A remote node as the tunnel needs it; the daemon maps its inventory to these. */
export interface WireguardPeer {
  /** Node name (logs, status). */
  readonly name: string;
  /** The node's WireGuard public key (base64). */
  readonly publicKey: string;
  /** "<node address>:<port>" or "[<ipv6>]:<port>"; IP literals only. */
  readonly endpoint: string;
  /** The node's pod CIDRs: traffic for them goes through this peer and is accepted from it. */
  readonly allowedIPs: readonly string[];
  /** Seconds between keepalives; 0 or undefined = off. */
  readonly persistentKeepaliveSec?: number;
}

/** A peer after validation: canonical endpoint and prefixes (sorted), keepalive 0 = off. */
export interface DesiredPeer {
  readonly name: string;
  readonly publicKey: string;
  readonly endpoint: string;
  readonly allowedIPs: readonly string[];
  readonly persistentKeepaliveSec: number;
}

export type PeerChange =
  | { readonly kind: 'add'; readonly peer: DesiredPeer }
  | {
      readonly kind: 'update';
      readonly peer: DesiredPeer;
      readonly fields: readonly ('endpoint' | 'allowed-ips' | 'persistent-keepalive')[];
    }
  | { readonly kind: 'remove'; readonly publicKey: string };

export type RouteChange = { readonly kind: 'add' | 'remove'; readonly cidr: string };

/** What reconcile must do; empty when the device already matches. */
export interface ReconcilePlan {
  readonly peers: readonly PeerChange[];
  readonly routes: readonly RouteChange[];
}

/** Maps a node description (structurally the inventory's node) to a peer; undefined without a key. */
export function peerFromNode(
  node: {
    readonly name: string;
    readonly address: string;
    readonly podCIDRs: readonly string[];
    readonly wireguardPublicKey?: string | undefined;
    /** Overrides opts.port for this node. */
    readonly wireguardPort?: number | undefined;
  },
  opts: { readonly port: number; readonly persistentKeepaliveSec?: number },
): WireguardPeer | undefined {
  if (node.wireguardPublicKey === undefined) return undefined;
  const host = node.address.includes(':') ? `[${node.address}]` : node.address;
  return {
    name: node.name,
    publicKey: node.wireguardPublicKey,
    endpoint: `${host}:${node.wireguardPort ?? opts.port}`,
    allowedIPs: node.podCIDRs,
    ...(opts.persistentKeepaliveSec === undefined
      ? {}
      : { persistentKeepaliveSec: opts.persistentKeepaliveSec }),
  };
}

/**
 * Validates and canonicalizes the wanted peers. Rejects malformed keys, endpoints or prefixes, a
 * public key listed twice, and a prefix claimed by two peers (WireGuard would silently give it to
 * whichever was configured last). A peer carrying this node's own key is dropped.
 */
export function normalizePeers(peers: readonly WireguardPeer[], ownPublicKey?: string): DesiredPeer[] {
  const byKey = new Map<string, DesiredPeer>();
  const owner = new Map<string, string>();
  for (const p of peers) {
    const what = `configure WireGuard peer ${JSON.stringify(p.name)}`;
    if (!isWireguardKey(p.publicKey)) {
      throw new WireguardError(
        'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
        `${what}: public key is not a base64 WireGuard key`,
      );
    }
    if (p.publicKey === ownPublicKey) continue;
    const dup = byKey.get(p.publicKey);
    if (dup !== undefined) {
      throw new WireguardError(
        'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
        `${what}: public key already used by peer ${JSON.stringify(dup.name)}`,
      );
    }
    const keepalive = p.persistentKeepaliveSec ?? 0;
    if (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 65535) {
      throw new WireguardError(
        'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
        `${what}: bad persistent keepalive ${keepalive}`,
      );
    }
    let endpoint: string;
    let allowed: string[];
    try {
      endpoint = canonicalEndpoint(p.endpoint);
      allowed = [...new Set(p.allowedIPs.map(canonicalCidr))].sort();
    } catch (err) {
      throw new WireguardError('MESHAUTH_ERR_WIREGUARD_PEER_INVALID', `${what}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    for (const cidr of allowed) {
      const other = owner.get(cidr);
      if (other !== undefined) {
        throw new WireguardError(
          'MESHAUTH_ERR_WIREGUARD_PEER_INVALID',
          `${what}: allowed IP ${cidr} is already allowed for peer ${JSON.stringify(other)}`,
        );
      }
      owner.set(cidr, p.name);
    }
    byKey.set(p.publicKey, {
      name: p.name,
      publicKey: p.publicKey,
      endpoint,
      allowedIPs: allowed,
      persistentKeepaliveSec: keepalive,
    });
  }
  return [...byKey.values()];
}

/**
 * Compares the wanted peers with the device's peers and the routes on its interface (non-kernel
 * routes only), and lists the changes that make them equal. Pure: no commands run here.
 */
export function planReconcile(
  desired: readonly DesiredPeer[],
  currentPeers: readonly PeerState[],
  currentRoutes: readonly string[],
): ReconcilePlan {
  const peers: PeerChange[] = [];
  const current = new Map(currentPeers.map((p) => [p.publicKey, p]));
  for (const want of desired) {
    const have = current.get(want.publicKey);
    if (have === undefined) {
      peers.push({ kind: 'add', peer: want });
      continue;
    }
    const fields: ('endpoint' | 'allowed-ips' | 'persistent-keepalive')[] = [];
    if (have.endpoint === undefined || canonicalEndpointOrRaw(have.endpoint) !== want.endpoint)
      fields.push('endpoint');
    const haveAllowed = [...new Set(have.allowedIPs.map(canonicalCidrOrRaw))].sort();
    if (haveAllowed.join(',') !== want.allowedIPs.join(',')) fields.push('allowed-ips');
    if ((have.persistentKeepaliveSec ?? 0) !== want.persistentKeepaliveSec)
      fields.push('persistent-keepalive');
    if (fields.length > 0) peers.push({ kind: 'update', peer: want, fields });
  }
  const wantedKeys = new Set(desired.map((p) => p.publicKey));
  for (const have of currentPeers) {
    if (!wantedKeys.has(have.publicKey)) peers.push({ kind: 'remove', publicKey: have.publicKey });
  }

  const routes: RouteChange[] = [];
  const wantRoutes = new Set(desired.flatMap((p) => p.allowedIPs));
  const haveRoutes = new Set(currentRoutes.map(canonicalCidrOrRaw));
  for (const cidr of [...wantRoutes].sort()) if (!haveRoutes.has(cidr)) routes.push({ kind: 'add', cidr });
  for (const cidr of [...haveRoutes].sort()) if (!wantRoutes.has(cidr)) routes.push({ kind: 'remove', cidr });
  return { peers, routes };
}

export function isEmptyPlan(plan: ReconcilePlan): boolean {
  return plan.peers.length === 0 && plan.routes.length === 0;
}

/** Arguments of `wg set <if> ...` for one peer change. */
export function wgSetArgs(ifname: string, change: PeerChange): string[] {
  if (change.kind === 'remove') return ['set', ifname, 'peer', change.publicKey, 'remove'];
  const p = change.peer;
  return [
    'set',
    ifname,
    'peer',
    p.publicKey,
    'endpoint',
    p.endpoint,
    'persistent-keepalive',
    p.persistentKeepaliveSec === 0 ? 'off' : String(p.persistentKeepaliveSec),
    'allowed-ips',
    p.allowedIPs.join(','),
  ];
}

function canonicalCidrOrRaw(text: string): string {
  try {
    return canonicalCidr(text);
  } catch {
    return text;
  }
}

function canonicalEndpointOrRaw(text: string): string {
  try {
    return canonicalEndpoint(text);
  } catch {
    return text;
  }
}
