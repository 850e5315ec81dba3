import type { TrustBundles } from '../../spiffe/index.js';
import { chainAnchors, trustDomainOf, type EntryTrust } from '../trust.js';
import { HandshakeError } from './errors.js';
import type { VerifiedPeer } from './verify-peer.js';

/**
 * The authorities both verified chains rest on (the peer's, verified just now, and our own SVID's)
 * in our bundles. Fails closed when either reaches none: the peer's passed path validation, so the
 * bundles changed in between (`svid-untrusted`); ours was verified when it was taken, so its
 * authority left the bundle since (`bundle-revoked`).
 */
export function reliedOnTrust(
  peer: VerifiedPeer,
  ownChainDer: readonly Buffer[],
  ownId: string,
  bundles: TrustBundles,
): { trust: EntryTrust; anchorsDer: Buffer[] } {
  const theirs = chainAnchors(peer.chainDer, bundles, trustDomainOf(peer.spiffeId));
  if (theirs.anchorsDer.length === 0) {
    throw new HandshakeError(
      'svid-untrusted',
      `verify peer SVID: ${peer.spiffeId} reaches no authority of the "${theirs.anchors.trustDomain}" bundle`,
    );
  }
  const ours = chainAnchors(ownChainDer, bundles, trustDomainOf(ownId));
  // Our SVID was verified against our bundle when the identity source took it, so a chain that
  // reaches none of its authorities now means the authority left the bundle while the SVID is
  // still held (the files source keeps presenting it until its files change). A peer with an older
  // bundle may still accept it; the entry would then rest on an authority this node no longer
  // trusts, and a later bundle change could not revoke it: fail closed.
  if (ours.anchorsDer.length === 0) {
    throw new HandshakeError(
      'bundle-revoked',
      `own SVID ${ownId} reaches no authority of the "${ours.anchors.trustDomain}" bundle: the authority it rests on left the bundle`,
    );
  }
  return {
    trust: { chains: [theirs.anchors, ours.anchors] },
    anchorsDer: [...theirs.anchorsDer, ...ours.anchorsDer],
  };
}
