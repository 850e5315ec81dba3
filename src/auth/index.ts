export { AuthCache, type CachedEntry, type EntryOrigin, type MirrorRepairReason } from './cache.js';
export {
  AuthManager,
  type AuthManagerOptions,
  type AuthObserver,
  type Authenticator,
  type AuthenticateRequest,
  type AuthenticateResult,
  type EntryWriteCheck,
  type PairNames,
  type PairResolver,
  type ServerAuthenticated,
} from './manager.js';
export { AuthGc } from './gc.js';
export { pairKey } from './pair.js';
export {
  bundleFingerprints,
  chainAnchors,
  removedAuthorities,
  trustDomainOf,
  trustLost,
  type BundleFingerprints,
  type ChainAnchors,
  type EntryTrust,
} from './trust.js';
export { entryWriteCheck, type EntryWriteCheckDeps } from './write-check.js';
