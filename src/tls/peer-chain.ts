import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';

/** More certificates than any sane SVID chain carries; longer chains are cut (and then fail verification). */
export const MAX_PEER_CHAIN_LENGTH = 16;

/**
 * The peer's certificate chain as DER, leaf FIRST, then its issuers.
 *
 * The leaf is the certificate whose key the peer proved in this handshake: the top-level object of
 * `getPeerCertificate(true)`. The issuers are the other certificates the peer presented, in issuing
 * order as node:tls links them (`issuerCertificate`); the walk stops at a self-signed certificate
 * (node links it to itself), at a repeat, or at MAX_PEER_CHAIN_LENGTH. Because meshauth contexts
 * have an empty trust store, nothing the peer did not present can appear here.
 * Returns [] when the peer presented no certificate.
 *
 * `getPeerX509Certificate()` is deliberately not used: on node 20 calling it breaks the socket's
 * peer chain (later calls return nothing and `getPeerCertificate(true)` loses the issuers).
 */
export function peerChainDer(socket: TLSSocket): Buffer[] {
  const detailed = socket.getPeerCertificate(true) as DetailedPeerCertificate | null | undefined;
  if (!detailed || !Buffer.isBuffer(detailed.raw) || detailed.raw.length === 0) return [];
  const chain: Buffer[] = [detailed.raw];
  let current: DetailedPeerCertificate = detailed;
  while (chain.length < MAX_PEER_CHAIN_LENGTH) {
    const next = current.issuerCertificate as DetailedPeerCertificate | undefined;
    if (!next || next === current || !Buffer.isBuffer(next.raw)) break;
    if (chain.some((c) => c.equals(next.raw))) break;
    chain.push(next.raw);
    current = next;
  }
  return chain;
}
