import { MeshauthError } from '../../errors.js';

/**
 * Stable failure reasons of a handshake (audit, metrics, logs). Certificate verification failures
 * are `svid-<X509SvidError reason>` (e.g. svid-untrusted, svid-expired).
 */
export const HANDSHAKE_REASONS = [
  'spiffe-id-mismatch',
  'no-local-svid',
  'remote-identity-unavailable',
  'peer-unreachable',
  'timeout',
  'protocol-error',
  'tls-version',
  'node-mismatch',
  'workload-not-on-node',
  'wireguard-key-mismatch',
  /** The peer did not prove possession of the WireGuard private key of its node (wireguard-proof.ts). */
  'wireguard-key-proof-invalid',
  /** At the moment of the entry write our SVID for the pair was gone (removed, expired). */
  'svid-removed',
  /** At the moment of the entry write our workload was no longer on this node. */
  'identity-removed',
  /** At the moment of the entry write the peer workload was no longer on the peer node. */
  'workload-moved',
  /**
   * At the moment of the entry write an authority the decision relied on had left the trust bundle,
   * or the authority of our own SVID had left it before the handshake (the SVID still held).
   */
  'bundle-revoked',
  /** At the moment of the entry write no enforce or permissive policy rule covered the pair. */
  'not-required-by-policy',
  'peer-rejected',
  'rate-limited',
  'too-many-connections',
  /** The node channel listener holds its limit of opening connections from the peer address. */
  'too-many-connections-from-address',
  'entry-write-failed',
  /**
   * This node's audit queue stayed above its high-water mark for the rest of the handshake's
   * deadline: nothing written (fail closed); the initiator retries with its backoff
   * (src/auth/audit-pacing.ts). Sent to the peer as the refusal's reason; a client that receives it
   * reports it under this reason too.
   */
  'audit-busy',
  /** The auth map had no free slot for the entry, even after a GC pass: nothing written (fail closed). */
  'auth-map-full',
  /** The caller's AbortSignal fired (e.g. shutdown). */
  'aborted',
  /** A callback supplied by the embedding code threw. */
  'internal-error',
  // Node channels (src/auth/channel).
  /** The peer node does not speak the node channel (the per-pair handshake is used instead). */
  'channel-unsupported',
  /** The node channel closed (peer gone, ping timeout, node SVID expired) before the work was done. */
  'channel-closed',
  /** No valid identity proof for a workload of the pair was held on the channel in time. */
  'proof-missing',
  /** An authenticator answered no outstanding request of this channel (replayed, out of order). */
  'proof-unrequested',
  'proof-malformed',
  'proof-context-mismatch',
  'proof-signature-invalid',
  'proof-finished-invalid',
  'proof-unsupported-key',
] as const;

export type HandshakeReason = (typeof HANDSHAKE_REASONS)[number] | `svid-${string}`;

/** Syntax of any reason code, ours or a peer's: lower-case words joined by dashes. */
export const REASON_CODE_RE = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

export function isHandshakeReason(s: string): s is HandshakeReason {
  return (
    (HANDSHAKE_REASONS as readonly string[]).includes(s) || (s.startsWith('svid-') && REASON_CODE_RE.test(s))
  );
}

/** A failed handshake. Never means an entry was written. */
export class HandshakeError extends MeshauthError {
  readonly reason: HandshakeReason;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    reason: HandshakeReason,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(
      'MESHAUTH_ERR_HANDSHAKE',
      message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.reason = reason;
    this.details = options.details ?? {};
  }
}

/** The handshake frame stream or a message in it is malformed. */
export function protocolError(message: string, details?: Record<string, unknown>): HandshakeError {
  return new HandshakeError('protocol-error', message, details ? { details } : {});
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
