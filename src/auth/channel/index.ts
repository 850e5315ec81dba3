export {
  NodeChannels,
  type NodeChannelsOptions,
  type ChannelEvent,
  type ChannelEviction,
} from './node-channels.js';
export { channelsToEvict, DEFAULT_MAX_CHANNELS, type EvictionCandidate } from './eviction.js';
export { ChannelConnection, type ChannelPeerCheck, type ChannelTimers } from './connection.js';
export {
  ProofExchange,
  REFUSAL_HOLD_MS,
  type RemoteProof,
  type ChannelUse,
  type PairReadiness,
  type ProofChannel,
} from './proofs.js';
export {
  AuthenticatorError,
  createAuthenticator,
  verifyAuthenticator,
  encodeRequest,
  decodeRequest,
  authenticatorRequestContext,
  cipherSuiteHash,
  SIGNATURE_SCHEME,
  HANDSHAKE_TYPE,
  type AuthenticatorConnection,
  type AuthenticatorRequest,
  type TlsRole,
} from './exported-authenticator.js';
export {
  CHANNEL_ALPN,
  CHANNEL_PROTOCOL_VERSION,
  parseChannelMessage,
  message as channelMessage,
  type ChannelMessage,
} from './protocol.js';
export { nodeSpiffeIdFor, DEFAULT_NODE_ID_PATH } from './node-identity.js';
