/**
 * The meshauth handshake: one TLS 1.3 mutual-TLS connection authenticates a pair of workloads on
 * two nodes, and both daemons write their auth entry from it.
 *
 *   client                                          server (:4250)
 *   TLS ClientHello, SNI = <sha256(remoteId)[:16] hex>.id.meshauth.invalid, ALPN meshauth/1
 *                       <- certificate of remoteId (or alert unrecognized_name)
 *   client certificate = SVID of localId  ->
 *   verify server chain, SPIFFE ID == remoteId       verify client chain (bundle of its trust domain)
 *   hello {v: 2, clientNode, serverNode, clientId, serverId, wgPublicKey?, wgProof?}  ->
 *                                                    clientId == certificate, clientNode owns the
 *                                                    source address, workload on that node, WireGuard
 *                                                    key as in the inventory and wgProof valid;
 *                                                    SVID still held; write entry
 *                       <- result {v: 2, ok, reason?, expiresAtMs, wgPublicKey?, wgProof?}
 *   check WireGuard key and wgProof, re-check trust, write entry only on ok
 *
 * Frames are a u32 big-endian length plus a UTF-8 JSON body of at most 16 KiB (frame.ts; the
 * length is checked before any body byte is buffered); messages are strict schemas (protocol.ts).
 * wgProof = HMAC-SHA256 keyed with X25519(own WireGuard key, peer's inventory key) over the TLS
 * exporter (RFC 8446 §7.5), the role and both nodes and keys (wireguard-proof.ts); it is required
 * whenever the inventory holds a WireGuard key for the peer node. Entry expiry = min(notAfter of
 * every certificate in both chains and of the trust anchors they rest on, now + maxEntryTtl); the
 * anchors' fingerprints are reported with the result (`trust`) for revocation on bundle change.
 * Any failure → no entry, a stable reason code (HandshakeError.reason on the client, onFailure /
 * stats() on the server).
 */
export { HandshakeClient, type AuthenticateParams, type HandshakeClientOptions } from './client.js';
export {
  DEFAULT_SERVER_LIMITS,
  HandshakeServer,
  type HandshakeServerLimits,
  type HandshakeServerOptions,
} from './server.js';
export {
  HANDSHAKE_REASONS,
  HandshakeError,
  isHandshakeReason,
  messageOf,
  protocolError,
  REASON_CODE_RE,
  type HandshakeReason,
} from './errors.js';
export { verifyPeerChain, type VerifiedPeer } from './verify-peer.js';
export { FRAME_HEADER_BYTES, FrameDecoder, MAX_FRAME_BYTES, encodeFrame } from './frame.js';
export {
  MAX_SPIFFE_ID_LENGTH,
  PROTOCOL_VERSION,
  failedResult,
  helloMessage,
  okResult,
  parseHello,
  parseResult,
  type HelloMessage,
  type ResultMessage,
} from './protocol.js';
export {
  certNotAfterMs,
  computeEntryExpiry,
  earliestNotAfterMs,
  type EntryExpiry,
  type EntryExpiryInput,
} from './expiry.js';
export { rateLimitKey, TokenBucketLimiter, type TokenBucketOptions } from './rate-limit.js';
export {
  WIREGUARD_BINDING_BYTES,
  WIREGUARD_BINDING_LABEL,
  bindingKeyingMaterial,
  verifyWireguardProof,
  wireguardProof,
  type WireguardBindingInput,
  type WireguardBindingRole,
} from './wireguard-proof.js';
export {
  CLIENT_OUTCOME_CHANNEL,
  SERVER_FAILURE_CHANNEL,
  SERVER_SUCCESS_CHANNEL,
  type HandshakeServerStats,
} from './stats.js';
export type {
  HandshakeFailureEvent,
  HandshakeIdentity,
  HandshakeResult,
  HandshakeStage,
  ServerAuthResult,
  AuthenticateRequest,
} from './types.js';
