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

/**
 * Stable reasons a signed audit head is refused: malformed (not a checkpoint note of ours),
 * untrusted-signer (the SVID chain does not verify against the trust bundles), wrong-node (origin,
 * signer and submitter differ), bad-signature (no valid signature by the signer's key), replayed
 * (older than a head already witnessed for that node), conflicting-head (same seq as a witnessed
 * head but another hash: the node forked its trail), not-allowed (the submitter may not submit),
 * clock-skew (the head's meshauth-time is too far from the witness's clock at receipt).
 */
export type SignedHeadReason =
  | 'malformed'
  | 'untrusted-signer'
  | 'wrong-node'
  | 'bad-signature'
  | 'replayed'
  | 'conflicting-head'
  | 'not-allowed'
  | 'clock-skew';

/** A signed audit head that was not accepted; `reason` is stable. */
export class SignedHeadError extends MeshauthError {
  readonly reason: SignedHeadReason;
  constructor(reason: SignedHeadReason, message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_SIGNED_HEAD', message, options);
    this.reason = reason;
  }
}
