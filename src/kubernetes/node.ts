import { normalizeIp, parseCidr } from '../config/index.js';
import type { InventoryNode } from '../inventory/index.js';
import { isWireguardKey } from '../wireguard/index.js';
import { ANNOTATIONS, type NodeObject } from './objects.js';
import { notHostAddress } from './pod.js';

export type NodeSkipReason = 'no-address' | 'malformed-address';

/** A problem with one field of a node that was kept without that field. */
export interface NodeFieldProblem {
  field: 'wireguard-public-key' | 'wireguard-port' | 'handshake-port' | 'pod-cidrs';
  reason: string;
}

export type NodeResult =
  | { ok: true; node: InventoryNode & { wireguardPort?: number }; problems: NodeFieldProblem[] }
  | { ok: false; reason: NodeSkipReason; detail?: string };

export interface NodeConversion {
  /** status.addresses type used as the handshake address. Default "InternalIP". */
  addressType: string;
}

const NOT_A_STRING = '\u0000not a string';

function port(text: string | undefined): number | undefined | 'bad' {
  if (text === undefined) return undefined;
  const n = /^\d{1,5}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  return n >= 1 && n <= 65535 ? n : 'bad';
}

/**
 * A Node as an inventory node. The handshake address is the first status.addresses entry of the
 * configured type (a node without one is skipped: no peer could reach it). Pod CIDRs come from
 * spec.podCIDRs (spec.podCIDR on old clusters), or from the meshauth.io/pod-cidrs annotation when
 * the spec has none. The WireGuard public key, WireGuard port and handshake port come from the
 * meshauth.io/ annotations; a malformed one is left out (reported in `problems`), the node kept.
 */
export function nodeToInventoryNode(obj: NodeObject, conv: NodeConversion): NodeResult {
  const addrs = obj.status?.addresses ?? [];
  const a = addrs.find((x) => x.type === conv.addressType && x.address);
  if (!a?.address) return { ok: false, reason: 'no-address', detail: `no ${conv.addressType} address` };
  const address = normalizeIp(a.address);
  if (address === undefined) return { ok: false, reason: 'malformed-address', detail: a.address };
  const special = notHostAddress(address);
  if (special) return { ok: false, reason: 'malformed-address', detail: `${a.address}: ${special}` };
  // annotation values are strings on the wire; anything else (a fake, a bad client) is replaced by
  // text no annotation parser below accepts, so it is reported as malformed rather than thrown on
  const ann = Object.fromEntries(
    Object.entries(obj.metadata?.annotations ?? {}).map(([k, v]) => [
      k,
      typeof v === 'string' ? v : NOT_A_STRING,
    ]),
  );
  const problems: NodeFieldProblem[] = [];

  const cidrs: string[] = [];
  const fromSpec = obj.spec?.podCIDRs?.length
    ? obj.spec.podCIDRs
    : obj.spec?.podCIDR
      ? [obj.spec.podCIDR]
      : [];
  const fromAnn = fromSpec.length === 0 && ann[ANNOTATIONS.podCidrs] !== undefined;
  const source = fromAnn ? (ann[ANNOTATIONS.podCidrs] as string).split(',') : fromSpec;
  for (const raw of source) {
    const text = raw.trim();
    if (text === '') continue;
    const c = parseCidr(text);
    if (!c) {
      problems.push({ field: 'pod-cidrs', reason: `malformed pod CIDR "${text}" left out` });
      continue;
    }
    if (!cidrs.includes(c.text)) cidrs.push(c.text);
  }

  let wireguardPublicKey: string | undefined;
  const key = ann[ANNOTATIONS.wireguardPublicKey];
  if (key !== undefined) {
    if (isWireguardKey(key.trim())) wireguardPublicKey = key.trim();
    else problems.push({ field: 'wireguard-public-key', reason: 'not a base64 32-byte key' });
  }
  const wgPort = port(ann[ANNOTATIONS.wireguardPort]);
  if (wgPort === 'bad') problems.push({ field: 'wireguard-port', reason: 'not a port number' });
  const hsPort = port(ann[ANNOTATIONS.handshakePort]);
  if (hsPort === 'bad') problems.push({ field: 'handshake-port', reason: 'not a port number' });

  return {
    ok: true,
    problems,
    node: {
      name: obj.metadata?.name ?? '',
      address,
      podCIDRs: cidrs,
      wireguardPublicKey,
      handshakePort: typeof hsPort === 'number' ? hsPort : undefined,
      ...(typeof wgPort === 'number' ? { wireguardPort: wgPort } : {}),
    },
  };
}
