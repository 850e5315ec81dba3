/** Identity sources (dev CA, SPIRE delegated identity, Workload API, files) and ID allocation. */
export type { IdentityEvent, IdentitySource, Svid, TrustBundles } from './source.js';
export {
  AllocatorError,
  IdAllocator,
  openStateAllocators,
  writeFileAtomic,
  type IdAllocatorOptions,
} from './allocator.js';
export {
  DEV_CA_CERT_TTL_MS,
  DEV_CA_DEFAULT_SVID_TTL_MS,
  DevCa,
  DevCaError,
  DevCaSource,
  type DevCaSourceOptions,
} from './dev-ca.js';
export { FilesSource, FilesSourceError, type FilesSourceOptions, type SvidFiles } from './files-source.js';
export {
  SpireDelegatedError,
  SpireDelegatedSource,
  createSpireDelegatedSource,
  type SpireDelegatedSourceOptions,
} from './spire-delegated.js';
export {
  WorkloadApiSource,
  WorkloadApiSourceError,
  createWorkloadApiSource,
  type WorkloadApiSourceOptions,
} from './workload-api-source.js';
