import type { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';

/** More certificates than any sane SVID chain carries; longer chains are cut (and then fail verification). */
export const MAX_PEER_CHAIN_LENGTH = 16;

const chains = new WeakMap<TLSSocket, readonly Buffer[]>();

/**
 * The peer's certificate chain as DER, leaf FIRST, then its issuers.
 *
 * The leaf is the certificate whose key the peer proved in this handshake
 * (`getPeerX509Certificate()`); the issuers are the other certificates the peer presented, in
 * issuing order as node links them (`X509Certificate.issuerCertificate`). The walk stops at a
 * self-signed certificate, at a repeat, or at MAX_PEER_CHAIN_LENGTH. Because meshauth contexts
 * have an empty trust store, nothing the peer did not present can appear here. Returns [] when the
 * peer presented no certificate.
 *
 * The X509Certificate API is read first: the legacy `getPeerCertificate(true)` object loses the
 * issuers on some node releases (20 among them) once `getPeerX509Certificate()` has been called on
 * the socket, whereas the X509 links do not depend on a legacy call before them. The chain is read
 * once per socket, on the first call (meshauth makes it as soon as the handshake completes), and
 * remembered, so later calls, and anything else later reading the peer certificate through
 * node:tls, cannot change the answer.
 */
export function peerChainDer(socket: TLSSocket): Buffer[] {
  const known = chains.get(socket);
  if (known) return [...known];
  const chain = viaX509(socket) ?? viaLegacy(socket);
  if (chain.length > 0) chains.set(socket, chain);
  return [...chain];
}

function viaX509(socket: TLSSocket): Buffer[] | undefined {
  const leaf = socket.getPeerX509Certificate();
  if (!leaf || leaf.raw.length === 0) return undefined;
  const chain: Buffer[] = [leaf.raw];
  let current: X509Certificate = leaf;
  while (chain.length < MAX_PEER_CHAIN_LENGTH) {
    const next = current.issuerCertificate;
    if (!next || chain.some((c) => c.equals(next.raw))) break;
    chain.push(next.raw);
    current = next;
  }
  return chain;
}

/**
 * The legacy object, for a socket whose X509 view is already spent (on node 20 a client socket
 * answers getPeerX509Certificate() once). Issuers lost by node make the chain shorter, never
 * longer: verification then refuses it (fail closed).
 */
function viaLegacy(socket: TLSSocket): Buffer[] {
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
