import { pairNames, type PairNames, type PairResolver } from '../auth/index.js';
import type { AuthKey } from '../datapath/index.js';
import type { IdAllocator } from '../identity/index.js';
import type { Inventory } from '../inventory/index.js';
import type { Policy } from '../policy/index.js';

/** Why a live auth entry must go (entry-removed audit reason). */
export type ObsoleteReason =
  'unknown-handle' | 'identity-removed' | 'workload-moved' | 'policy-removed' | 'svid-removed';

/**
 * Numeric handles <-> names for the auth manager, from the persisted allocators, the inventory
 * and the policy, and whether an entry is still wanted. Policy, inventory, the node's workloads
 * and the held SVIDs are read through getters so reloads take effect at once.
 */
export class DaemonResolver implements PairResolver {
  constructor(
    private readonly deps: {
      identities: IdAllocator;
      nodes: IdAllocator;
      inventory: () => Inventory;
      policy: () => Policy;
      handshakePort: number;
      /** SPIFFE IDs of this node's workloads (the compiled node state). */
      localIdentities: () => readonly string[];
      /** Whether the identity source holds an SVID for a local workload. */
      holdsSvid: (spiffeId: string) => boolean;
    },
  ) {}

  /** The names behind an entry's handles (audit events, logs). */
  names(key: AuthKey): PairNames {
    return pairNames(this, key);
  }

  /**
   * Why a live entry must go, or undefined to keep it: a handle no allocator knows, our workload
   * left this node, the remote workload is no longer on that node, the policy no longer requires
   * the pair, or the identity source no longer holds an SVID for our side (entry deleted,
   * expired, denied). Checked in that order.
   */
  obsoleteReason(key: AuthKey): ObsoleteReason | undefined {
    const { localId: local, remoteId: remote, node } = this.names(key);
    if (!local || !remote || !node) return 'unknown-handle';
    if (!this.deps.localIdentities().includes(local)) return 'identity-removed';
    if (!this.deps.inventory().isWorkloadOnNode(remote, node)) return 'workload-moved';
    if (!this.deps.policy().requires(local, remote)) return 'policy-removed';
    if (!this.deps.holdsSvid(local)) return 'svid-removed';
    return undefined;
  }

  spiffeIdOf(numericId: number): string | undefined {
    return this.deps.identities.keyFor(numericId);
  }

  numericIdFor(spiffeId: string): number {
    return this.deps.identities.idFor(spiffeId);
  }

  nodeNameOf(nodeId: number): string | undefined {
    return this.deps.nodes.keyFor(nodeId);
  }

  nodeIdOf(nodeName: string): number | undefined {
    return this.deps.nodes.lookup(nodeName);
  }

  nodeEndpoint(nodeName: string): { address: string; port: number } | undefined {
    const n = this.deps.inventory().node(nodeName);
    return n ? { address: n.address, port: n.handshakePort ?? this.deps.handshakePort } : undefined;
  }

  pairRequired(localSpiffeId: string, remoteSpiffeId: string, remoteNode: string): boolean {
    return (
      this.deps.inventory().isWorkloadOnNode(remoteSpiffeId, remoteNode) &&
      this.deps.policy().requires(localSpiffeId, remoteSpiffeId)
    );
  }
}
