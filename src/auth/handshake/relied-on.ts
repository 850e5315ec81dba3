import type { TrustBundles } from '../../spiffe/index.js';
import { chainAnchors, trustDomainOf, type EntryTrust } from '../trust.js';
import { HandshakeError } from './errors.js';
import type { VerifiedPeer } from './verify-peer.js';

/**
 * The authorities both verified chains rest on (the peer's, verified just now, and our own SVID's)
 * in our bundles. Fails closed when the peer's reaches none (it passed path validation, so that
 * means the bundles changed in between).
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
  // Our own chain is judged by the peer against its bundle; when ours does not anchor it (a
  // misconfiguration the peer will refuse), only the peer's chain is recorded.
  const chains = ours.anchorsDer.length > 0 ? [theirs.anchors, ours.anchors] : [theirs.anchors];
  return {
    trust: { chains },
    anchorsDer: [...theirs.anchorsDer, ...ours.anchorsDer],
  };
}
