/** A node running meshauthd. */
export interface InventoryNode {
  name: string;
  /** Address of the node's daemon (handshake peers connect here; handshakes come from here). */
  address: string;
  /** Pod address ranges of the node, canonical CIDR text. */
  podCIDRs: string[];
  /** Base64 WireGuard public key of the node, when WireGuard is used. */
  wireguardPublicKey: string | undefined;
  /** Handshake port of this node's daemon, when it differs from the configured default. */
  handshakePort: number | undefined;
  /** WireGuard UDP port of the node, when it differs from wireguard.listenPort (Kubernetes annotation). */
  wireguardPort?: number | undefined;
}

/** A workload (pod): its SPIFFE ID, node and addresses. */
export interface InventoryWorkload {
  name: string | undefined;
  spiffeId: string;
  node: string;
  /** Normalized IP addresses. */
  ips: string[];
  /** SPIRE selectors, "type:value" (e.g. "k8s:ns:demo"). */
  selectors: string[];
}

export interface InventoryData {
  nodes: InventoryNode[];
  workloads: InventoryWorkload[];
}
