import type { EntryWriteCheck } from './manager.js';

export interface EntryWriteCheckDeps {
  /** Whether the identity source still holds an SVID for our workload. */
  holdsSvid: (spiffeId: string) => boolean;
  /** Whether the inventory still places our workload on this node. */
  isLocalIdentity: (spiffeId: string) => boolean;
  /** Whether the inventory still places the peer workload on the peer node. */
  isWorkloadOnNode: (spiffeId: string, node: string) => boolean;
  /**
   * Whether the policy in force asks for authentication of the pair (an enforce or permissive
   * rule; a disabled rule or no rule does not). Both identities are SPIFFE IDs, ours first.
   */
  requiresPair: (localSpiffeId: string, remoteSpiffeId: string) => boolean;
}

/**
 * The check the auth manager runs at the moment it writes an entry (client and server side): a
 * handshake that started while the trust held may finish after our SVID was removed or after a
 * workload left its node, and must then write nothing. Nor is an entry written for a pair no
 * policy rule asks for: a peer with a valid SVID must not pre-seed entries that would take effect
 * once a rule appears, nor fill the auth map. Reasons are handshake reason codes.
 */
export function entryWriteCheck(deps: EntryWriteCheckDeps): EntryWriteCheck {
  return ({ localId, remoteId, node }) => {
    if (!deps.isLocalIdentity(localId))
      return { reason: 'identity-removed', message: `${localId} is no longer a workload of this node` };
    if (!deps.holdsSvid(localId))
      return { reason: 'svid-removed', message: `no SVID held for ${localId} any more` };
    if (!deps.isWorkloadOnNode(remoteId, node))
      return { reason: 'workload-moved', message: `${remoteId} is no longer a workload of node ${node}` };
    if (!deps.requiresPair(localId, remoteId))
      return {
        reason: 'not-required-by-policy',
        message: `no enforce or permissive policy rule covers ${localId} and ${remoteId}`,
      };
    return undefined;
  };
}
