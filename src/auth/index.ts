export { AuthCache, type CachedEntry, type EntryOrigin } from './cache.js';
export {
  AuthManager,
  type AuthManagerOptions,
  type AuthObserver,
  type Authenticator,
  type AuthenticateRequest,
  type AuthenticateResult,
  type PairResolver,
  type ServerAuthenticated,
} from './manager.js';
export { AuthGc } from './gc.js';
export { pairKey } from './pair.js';
