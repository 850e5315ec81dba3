/**
 * The meshauth handshake: one TLS 1.3 mutual-TLS connection authenticates a pair of workloads on
 * two nodes, and both daemons write their auth entry from it.
 *
 *   client                                          server (:4250)
 *   TLS ClientHello, SNI = <sha256(remoteId)[:16] hex>.id.meshauth.invalid, ALPN meshauth/1
 *                       <- certificate of remoteId (or alert unrecognized_name)
 *   client certificate = SVID of localId  ->
 *   verify server chain, SPIFFE ID == remoteId       verify client chain (bundle of its trust domain)
 *   hello {v, clientNode, serverNode, clientId, serverId, wgPublicKey?}  ->
 *                                                    clientId == certificate, clientNode owns the
 *                                                    source address, workload on that node, WireGuard
 *                                                    key as in the inventory; write entry
 *                       <- result {v, ok, reason?, expiresAtMs, wgPublicKey?}
 *   check WireGuard key, write entry only on ok
 *
 * Frames are a u32 big-endian length plus a JSON body of at most 16 KiB. Entry expiry =
 * min(notAfter of every certificate in both chains, now + maxEntryTtl). Any failure → no entry,
 * a stable reason code (HandshakeError.reason on the client, onFailure / stats() on the server).
 */
export { HandshakeClient, type AuthenticateParams, type HandshakeClientOptions } from './client.js';
export {
  DEFAULT_SERVER_LIMITS,
  HandshakeServer,
  type HandshakeServerLimits,
  type HandshakeServerOptions,
} from './server.js';
export { HANDSHAKE_REASONS, HandshakeError, isHandshakeReason, type HandshakeReason } from './errors.js';
export { FRAME_HEADER_BYTES, FrameDecoder, MAX_FRAME_BYTES, encodeFrame } from './frame.js';
export {
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
export { TokenBucketLimiter, type TokenBucketOptions } from './rate-limit.js';
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
} from './types.js';
