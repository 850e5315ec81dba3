import type { IdentitySource } from '../../identity/index.js';
import type { EntryTrust } from '../trust.js';

/**
 * What the handshake needs from an identity source. With `subscribe`, the server can wait briefly
 * for the SVID of a workload the inventory already places on this node (a new pod whose SVID the
 * identity source has not delivered yet) instead of refusing at once.
 */
export type HandshakeIdentity = Pick<IdentitySource, 'svid' | 'bundles'> &
  Partial<Pick<IdentitySource, 'subscribe'>>;

/** A client the server authenticated; the daemon writes the reverse auth entry from it. */
export interface ServerAuthResult {
  /** Our workload: the identity the client asked for (server name) and that we presented. */
  localId: string;
  /** The client's workload (verified SPIFFE ID of its leaf). */
  remoteId: string;
  /** The client's node (checked against the TCP source address). */
  peerNode: string;
  /** TCP source address of the client. */
  peerAddress: string;
  /** min(notAfter of every certificate in both presented chains and their trust anchors, now + maxEntryTtl). */
  expiresAtMs: number;
  /** The authorities and chains the decision relied on (revocation on bundle change). */
  trust: EntryTrust;
  /** Accept to entry write. */
  durationMs: number;
  localSerial: string;
  peerSerials: string[];
  peerNotAfterMs: number;
  tlsVersion: string;
  cipher: string;
}

export type HandshakeStage = 'accept' | 'tls' | 'verify' | 'hello' | 'entry';

/** A connection the server refused or a handshake that failed on the server side. */
export interface HandshakeFailureEvent {
  reason: string;
  message: string;
  /** "address:port" of the remote end. */
  peer: string;
  peerAddress: string;
  stage: HandshakeStage;
  durationMs: number;
  /** Known once the server name / certificate / hello were read. */
  localId?: string;
  remoteId?: string;
  peerNode?: string;
}

/** The client half's outcome. */
export interface HandshakeResult {
  localId: string;
  remoteId: string;
  peerNode: string;
  /**
   * min(notAfter of every certificate in both presented chains and their trust anchors,
   * now + maxEntryTtl, the server's expiry).
   */
  expiresAtMs: number;
  /** The authorities and chains the decision relied on (revocation on bundle change). */
  trust: EntryTrust;
  localSerial: string;
  peerSerials: string[];
  peerNotAfterMs: number;
  tlsVersion: string;
  cipher: string;
  durationMs: number;
}

/** One handshake to run as the client: our workload, the one we ask for, and the peer daemon to dial. */
export interface AuthenticateRequest {
  /** The node whose daemon we dial (the hello's serverNode; the WireGuard key is looked up for it). */
  peerNode: string;
  peerAddress: string;
  peerPort: number;
  /** Our workload: we present its SVID. */
  localId: string;
  /** The workload we ask for: the server must present an SVID for exactly this SPIFFE ID. */
  remoteId: string;
  signal?: AbortSignal;
}
