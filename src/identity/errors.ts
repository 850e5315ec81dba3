import { MeshauthError } from '../errors.js';

/** The embedded development CA could not be created, loaded, saved or could not issue (code MESHAUTH_ERR_DEV_CA). */
export class DevCaError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_DEV_CA', message, options);
  }
}

/** The SPIRE Delegated Identity API source is not ready or closed (code MESHAUTH_ERR_SPIRE_DELEGATED). */
export class SpireDelegatedError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_SPIRE_DELEGATED', message, options);
  }
}

/** The SPIFFE Workload API source is not ready or closed (code MESHAUTH_ERR_WORKLOAD_API_SOURCE). */
export class WorkloadApiSourceError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_WORKLOAD_API_SOURCE', message, options);
  }
}

/** The files source's configuration is invalid or its files are not usable (code MESHAUTH_ERR_FILES_SOURCE). */
export class FilesSourceError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_FILES_SOURCE', message, options);
  }
}

/** A node-local id allocator cannot load, persist or hand out a handle (code MESHAUTH_ERR_ALLOCATOR). */
export class AllocatorError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_ALLOCATOR', message, options);
  }
}
