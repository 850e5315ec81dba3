export { AuthCache, type CachedEntry, type EntryOrigin } from './cache.js';
export {
  AuthManager,
  type AuthManagerOptions,
  type Authenticator,
  type AuthenticateRequest,
  type AuthenticateResult,
  type PairResolver,
  type ServerAuthenticated,
} from './manager.js';
export { AuthGc } from './gc.js';
export { pairKey, pairNames, type PairNames } from './pair.js';
export {
  AuthReporter,
  type AuthObserver,
  type ClientFailure,
  type ClientSuccess,
  type ServerSuccess,
  type SignalOutcome,
  type WorkReason,
} from './reporter.js';
