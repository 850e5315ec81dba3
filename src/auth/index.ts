export { AuthCache, type CachedEntry, type EntryOrigin, type MirrorRepairReason } from './cache.js';
export {
  AuthManager,
  type AuditBackpressure,
  type AuthManagerOptions,
  type Authenticator,
  type AuthenticateRequest,
  type AuthenticateResult,
  type EntryWriteCheck,
  type PairResolver,
  type ServerAuthenticated,
} from './manager.js';
export {
  isPacedRefusal,
  ResponderAuditPacer,
  type ResponderAuditPacerOptions,
  type ResponderPacerStats,
  type ResponderPair,
  type ResponderPath,
} from './audit-pacing.js';
export { AuthGc } from './gc.js';
export { pairKey, pairNames, type PairNames } from './pair.js';
export {
  AuthReporter,
  type AuthObserver,
  type ClientFailure,
  type ClientSuccess,
  type Revocation,
  type ServerSuccess,
  type SignalOutcome,
  type WorkReason,
} from './reporter.js';
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
export { removeUnauditedEntries, trailKey, type EntryLifecycleEvent, type EntryTrail } from './unaudited.js';
