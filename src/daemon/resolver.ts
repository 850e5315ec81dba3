import type { PairResolver } from '../auth/index.js';
import type { IdAllocator } from '../identity/index.js';
import type { Inventory } from '../inventory/index.js';
import type { Policy } from '../policy/index.js';

/**
 * Numeric handles <-> names for the auth manager, from the persisted allocators, the inventory
 * and the policy. Policy and inventory are read through getters so reloads take effect at once.
 */
export class DaemonResolver implements PairResolver {
  constructor(
    private readonly deps: {
      identities: IdAllocator;
      nodes: IdAllocator;
      inventory: () => Inventory;
      policy: () => Policy;
      handshakePort: number;
    },
  ) {}

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
