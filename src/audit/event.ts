import type { AuditEventInput, AuditEventType } from './sink.js';

export const AUDIT_EVENT_TYPES: readonly AuditEventType[] = [
  'signal',
  'handshake-succeeded',
  'handshake-failed',
  'entry-written',
  'entry-expired',
  'entry-removed',
  'svid-rotated',
  'reauth',
  'peer-unreachable',
  'gap',
  'retention',
  'head-witnessed',
  'head-rejected',
  'clock-step',
  'policy-changed',
];

export const AUDIT_OUTCOMES = ['success', 'failure', 'info'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** One row of the audit trail as stored (hashes hex-encoded). */
export interface StoredAuditEvent {
  seq: number;
  atMs: number;
  type: AuditEventType;
  outcome?: AuditOutcome;
  reason?: string;
  localId?: string;
  remoteId?: string;
  node?: string;
  direction?: AuditEventInput['direction'];
  details?: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export function isAuditEventType(v: string): v is AuditEventType {
  return (AUDIT_EVENT_TYPES as readonly string[]).includes(v);
}

export function isAuditOutcome(v: string): v is AuditOutcome {
  return (AUDIT_OUTCOMES as readonly string[]).includes(v);
}
