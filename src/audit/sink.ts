/**
 * What the auth path needs from the audit trail: a non-blocking record() call.
 * src/audit implements it with the SQLite store; tests use an in-memory sink.
 */
export type AuditEventType =
  | 'signal'
  | 'handshake-succeeded'
  | 'handshake-failed'
  | 'entry-written'
  | 'entry-expired'
  | 'entry-removed'
  | 'svid-rotated'
  | 'reauth'
  | 'peer-unreachable'
  | 'gap'
  /** Written by the store itself when retention deleted the oldest rows (records the new chain anchor). */
  | 'retention'
  /** A signed audit head of another node this node witnessed (src/audit/witness.ts). */
  | 'head-witnessed'
  /** A signed audit head this node refused to witness, with the reason. */
  | 'head-rejected'
  /** The wall clock was stepped (details: stepMs, behindMs); src/time.ts WallClockGuard. */
  | 'clock-step'
  /**
   * The policy in force changed (outcome info): at daemon start, on an applied policy file reload,
   * on a change of the MutualAuthPolicy-derived rules (details: src/daemon/policy-trail.ts).
   */
  | 'policy-changed';

export interface AuditEventInput {
  type: AuditEventType;
  /** Defaults to now (ms since epoch). */
  atMs?: number;
  outcome?: 'success' | 'failure' | 'info';
  /** Stable reason code for failures / removals (e.g. svid-untrusted, spiffe-id-mismatch, gc-expired). */
  reason?: string;
  localId?: string;
  remoteId?: string;
  /** Peer node name. */
  node?: string;
  direction?: 'egress' | 'ingress' | 'client' | 'server';
  /** Free-form structured details (serials, notAfter, tls version, cipher, duration, packet counts). */
  details?: Record<string, unknown>;
}

export interface AuditSink {
  /** Never blocks and never throws; overflow is counted by the implementation. */
  record(event: AuditEventInput): void;
}

/** An AuditSink that keeps events in memory (tests, and the fallback when auditing is disabled). */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEventInput[] = [];
  record(event: AuditEventInput): void {
    this.events.push({ atMs: Date.now(), ...event });
  }
}
