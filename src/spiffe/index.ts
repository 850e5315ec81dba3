/** SPIFFE: IDs, trust domains, X509-SVID verification and trust bundles. */
export type { Svid, TrustBundles } from './svid.js';
export { SpiffeIdError, X509SvidError, BundleError, PublicKeyError, type X509SvidReason } from './errors.js';
export {
  SpiffeId,
  TrustDomain,
  parseSpiffeId,
  parseTrustDomain,
  spiffeIdProblem,
  trustDomainOf,
  MAX_SPIFFE_ID_BYTES,
  MAX_TRUST_DOMAIN_BYTES,
} from './id.js';
export {
  parseCertificates,
  parseCertificate,
  parsePrivateKey,
  publicKeyOf,
  readExtensions,
  toPem,
  KeyUsage,
  type KeyUsageName,
  type CertExtensions,
  type ParsedCertificate,
} from './certificate.js';
export {
  verifyX509Svid,
  checkLeaf,
  keyMatchesLeaf,
  parseSvidCertificate,
  type VerifiedX509Svid,
  type VerifyX509SvidOptions,
} from './x509-svid.js';
export {
  X509SvidVerifier,
  DEFAULT_VERIFY_CACHE_ENTRIES,
  type X509SvidVerifierOptions,
  type X509SvidVerifierStats,
} from './verify-cache.js';
export { criticalExtensions, type CriticalExtension } from './openssl.js';
export {
  MAX_BUNDLE_BYTES,
  parseBundle,
  parseJwksBundle,
  formatJwksBundle,
  type X509Bundle,
} from './bundle.js';
