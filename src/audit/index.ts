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
export {
  AuditQueryError,
  AuditSchemaError,
  AuditStoreError,
  SignedHeadError,
  type SignedHeadReason,
} from './errors.js';
export {
  checkpointText,
  ecdsaKeyId,
  MAX_NOTE_BYTES,
  NOTE_SIG_TYPE_ECDSA,
  openSignedHead,
  originOf,
  parseCheckpointText,
  signHead,
  splitNote,
  type AuditHead,
  type HeadSigningSvid,
  type OpenSignedHeadOptions,
  type VerifiedHead,
} from './signed-head.js';
export {
  listWitnessedHeads,
  Witness,
  type SignedHeadEnvelope,
  type SubmitResult,
  type WitnessedHeadRecord,
  type WitnessObserver,
  type WitnessOptions,
} from './witness.js';
export {
  verifyAgainstHeads,
  type FetchedHead,
  type VerifyAgainstHeadsOptions,
  type WitnessProblemKind,
  type WitnessReport,
} from './witness-check.js';
export { HeadPublisher, type HeadPublisherOptions, type HeadSubmission } from './head-publisher.js';
export { canonicalJson, GENESIS_HASH, rowHash, type ChainFields } from './canonical.js';
export { SCHEMA_VERSION, migrate, schemaVersion } from './schema.js';
export { AuditStore, type AuditStoreOptions, type AuditStoreStats } from './store.js';
export { isIdentityPattern, type AuditQuery } from './query.js';
export {
  verifyChainRows,
  type ChainCheckpoint,
  type ChainProblemKind,
  type ChainReport,
  type ChainSnapshot,
} from './verify.js';
export type { EventRow, NameOf } from './rows.js';
export type { RetentionPolicy, RetentionResult } from './retention.js';
export {
  AuditWriter,
  type AuditWriterObserver,
  type AuditWriterOptions,
  type AuditWriterStats,
  DROPPABLE_AUDIT_EVENTS,
} from './writer.js';
export {
  SignalAggregator,
  type SignalAggregatorOptions,
  type SignalObservation,
} from './signal-aggregator.js';
export { RetentionRunner, type RetentionRunnerOptions } from './retention-runner.js';
export {
  auditLogRecord,
  exportLogsRequest,
  OtlpLogExporter,
  type OtlpExporterOptions,
  type OtlpExporterStats,
} from './otlp-export.js';
