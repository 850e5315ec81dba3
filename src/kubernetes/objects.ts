/**
 * The parts of Kubernetes objects (core/v1 Pod and Node, meshauth.io MutualAuthPolicy) that
 * meshauth reads. Structural subsets of @kubernetes/client-node's V1Pod and V1Node, so the
 * converters and the sources can be tested with plain objects.
 */

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: Date | string;
  deletionTimestamp?: Date | string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface PodObject {
  metadata?: ObjectMeta;
  spec?: { nodeName?: string; serviceAccountName?: string; hostNetwork?: boolean };
  status?: { phase?: string; podIP?: string; podIPs?: Array<{ ip?: string }> };
}

export interface NodeObject {
  metadata?: ObjectMeta;
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { addresses?: Array<{ type?: string; address?: string }> };
}

/** Annotations meshauth reads from (and, for its own node, writes to) Node objects. */
export const ANNOTATIONS = {
  /** Base64 WireGuard public key of the node's tunnel (written by the node's own meshauthd). */
  wireguardPublicKey: 'meshauth.io/wireguard-public-key',
  /** UDP port of the node's WireGuard interface, when it differs from wireguard.listenPort. */
  wireguardPort: 'meshauth.io/wireguard-port',
  /** TCP port of the node's handshake listener, when it differs from handshake.port. */
  handshakePort: 'meshauth.io/handshake-port',
  /** Comma-separated pod CIDRs, for CNIs that do not fill spec.podCIDRs. */
  podCidrs: 'meshauth.io/pod-cidrs',
} as const;

/** "namespace/name" of an object ("name" for cluster-scoped ones). */
export function objectKey(o: { metadata?: ObjectMeta }): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ''}` : (m.name ?? '');
}
