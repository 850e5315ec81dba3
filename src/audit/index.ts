export type { AuditEventInput, AuditEventType, AuditSink } from './sink.js';
export { MemoryAuditSink } from './sink.js';
export {
  AUDIT_EVENT_TYPES,
  AUDIT_OUTCOMES,
  isAuditEventType,
  isAuditOutcome,
  type AuditOutcome,
  type StoredAuditEvent,
} from './event.js';
export { AuditQueryError, AuditSchemaError, AuditStoreError } from './errors.js';
export { canonicalJson, GENESIS_HASH, rowHash, type ChainFields } from './canonical.js';
export { SCHEMA_VERSION, migrate, schemaVersion } from './schema.js';
export {
  AuditStore,
  isIdentityPattern,
  type AuditQuery,
  type AuditStoreOptions,
  type AuditStoreStats,
  type ChainProblemKind,
  type ChainCheckpoint,
  type ChainReport,
  type RetentionPolicy,
  type RetentionResult,
} from './store.js';
export {
  AuditWriter,
  type AuditWriterObserver,
  type AuditWriterOptions,
  type AuditWriterStats,
} from './writer.js';
export {
  SignalAggregator,
  type SignalAggregatorOptions,
  type SignalObservation,
} from './signal-aggregator.js';
export { RetentionRunner, type RetentionRunnerOptions } from './retention-runner.js';
