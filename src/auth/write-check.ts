import type { EntryWriteCheck } from './manager.js';

export interface EntryWriteCheckDeps {
  /** Whether the identity source still holds an SVID for our workload. */
  holdsSvid: (spiffeId: string) => boolean;
  /** Whether the inventory still places our workload on this node. */
  isLocalIdentity: (spiffeId: string) => boolean;
  /** Whether the inventory still places the peer workload on the peer node. */
  isWorkloadOnNode: (spiffeId: string, node: string) => boolean;
}

/**
 * The check the auth manager runs at the moment it writes an entry (client and server side): a
 * handshake that started while the trust held may finish after our SVID was removed or after a
 * workload left its node, and must then write nothing. Reasons are handshake reason codes.
 */
export function entryWriteCheck(deps: EntryWriteCheckDeps): EntryWriteCheck {
  return ({ localId, remoteId, node }) => {
    if (!deps.isLocalIdentity(localId))
      return { reason: 'identity-removed', message: `${localId} is no longer a workload of this node` };
    if (!deps.holdsSvid(localId))
      return { reason: 'svid-removed', message: `no SVID held for ${localId} any more` };
    if (!deps.isWorkloadOnNode(remoteId, node))
      return { reason: 'workload-moved', message: `${remoteId} is no longer a workload of node ${node}` };
    return undefined;
  };
}
