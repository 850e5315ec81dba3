import { MeshauthError } from '../errors.js';

/** The audit database could not be opened, migrated, read or written. */
export class AuditStoreError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_AUDIT_STORE', message, options);
  }
}

/** The schema version is one this build cannot use: newer than it knows, or older on a read-only open. */
export class AuditSchemaError extends MeshauthError {
  constructor(message: string) {
    super('MESHAUTH_ERR_AUDIT_SCHEMA', message);
  }
}

/** A query filter is malformed (bad time range, bad pattern, bad page size). */
export class AuditQueryError extends MeshauthError {
  constructor(message: string) {
    super('MESHAUTH_ERR_AUDIT_QUERY', message);
  }
}
