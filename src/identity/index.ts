/**
 * Identity: where this node's workload SVIDs and the trust bundles come from (embedded development
 * CA, SPIRE Delegated Identity API, SPIFFE Workload API, files), and the node-local numeric handles
 * the BPF maps key identities by. The SPIFFE value types (Svid, TrustBundles) live in src/spiffe.
 */
export type { IdentityEvent, IdentitySource, IdentitySourceKind } from './source.js';
export {
  IdentitySourceBase,
  IdentitySourceCore,
  DEFAULT_READY_TIMEOUT_MS,
  REASON_EXPIRED,
  REASON_NOT_WANTED,
  type IdentitySourceBaseOptions,
  type IdentitySourceCoreOptions,
  type LogContext,
  type Readiness,
} from './core.js';
export {
  AllocatorError,
  DevCaError,
  FilesSourceError,
  SpireDelegatedError,
  WorkloadApiSourceError,
} from './errors.js';
export {
  DevCa,
  DevCaSource,
  DEV_CA_CERT_TTL_MS,
  DEV_CA_DEFAULT_SVID_TTL_MS,
  type DevCaSourceOptions,
} from './dev-ca.js';
export { FilesSource, type FilesSourceOptions, type SvidFiles } from './files-source.js';
export {
  SpireDelegatedSource,
  createSpireDelegatedSource,
  type SpireDelegatedSourceOptions,
} from './spire-delegated.js';
export {
  WorkloadApiSource,
  createWorkloadApiSource,
  type WorkloadApiSourceOptions,
} from './workload-api-source.js';
export { IdAllocator, openStateAllocators, type IdAllocatorOptions } from './allocator.js';
