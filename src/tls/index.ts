export {
  MESHAUTH_SNI_SUFFIX,
  SNI_HASH_BYTES,
  isMeshauthSni,
  sniForSpiffeId,
  sniHashFromServerName,
  sniHashOf,
} from './sni.js';
export {
  MESHAUTH_ALPN,
  MESHAUTH_TLS_VERSION,
  SecureContextCache,
  anonymousSecureContext,
  secureContextFor,
  type TlsCredentials,
} from './context.js';
export { MAX_PEER_CHAIN_LENGTH, peerChainDer } from './peer-chain.js';
export { TLS_ALERT, sendPlaintextAlert, tlsAlertOf } from './alert.js';
