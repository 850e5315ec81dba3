import type { ChainFields } from './canonical.js';
import { isAuditOutcome, type StoredAuditEvent } from './event.js';
import type { AuditEventType } from './sink.js';

/** A row of the events table: SPIFFE IDs and node names as references into `names`. */
export interface EventRow {
  seq: number;
  ts: number;
  type: string;
  outcome: string | null;
  reason: string | null;
  local_ref: number | null;
  remote_ref: number | null;
  node_ref: number | null;
  direction: string | null;
  details: string | null;
  prev_hash: Buffer;
  hash: Buffer;
}

/** The chain_head row: last seq and hash, highest event time and the largest lateness seen. */
export interface HeadRow {
  seq: number;
  hash: Buffer;
  max_ts: number;
  lateness_ms: number;
}

/** The value of a `names` id, or undefined when there is no such row. */
export type NameOf = (id: number) => string | undefined;

function resolve(ref: number | null, nameOf: NameOf): string | null {
  // a reference to a missing name reads as a value no writer could have hashed
  return ref === null ? null : (nameOf(ref) ?? `<missing name ${ref}>`);
}

/** The fields a row's hash covers, names resolved. */
export function toFields(r: EventRow, nameOf: NameOf): ChainFields {
  return {
    seq: r.seq,
    prevHash: r.prev_hash,
    ts: r.ts,
    type: r.type,
    outcome: r.outcome,
    reason: r.reason,
    localId: resolve(r.local_ref, nameOf),
    remoteId: resolve(r.remote_ref, nameOf),
    node: resolve(r.node_ref, nameOf),
    direction: r.direction,
    details: r.details,
  };
}

/** A row as the API and CLI see it. */
export function toEvent(r: EventRow, nameOf: NameOf): StoredAuditEvent {
  const e: StoredAuditEvent = {
    seq: r.seq,
    atMs: r.ts,
    // Unknown types (written by a newer build) are passed through as they are.
    type: r.type as AuditEventType,
    prevHash: r.prev_hash.toString('hex'),
    hash: r.hash.toString('hex'),
  };
  if (r.outcome !== null && isAuditOutcome(r.outcome)) e.outcome = r.outcome;
  if (r.reason !== null) e.reason = r.reason;
  const localId = resolve(r.local_ref, nameOf);
  const remoteId = resolve(r.remote_ref, nameOf);
  const node = resolve(r.node_ref, nameOf);
  if (localId !== null) e.localId = localId;
  if (remoteId !== null) e.remoteId = remoteId;
  if (node !== null) e.node = node;
  if (r.direction !== null) e.direction = r.direction as StoredAuditEvent['direction'];
  if (r.details !== null) {
    try {
      e.details = JSON.parse(r.details) as Record<string, unknown>;
    } catch {
      e.details = { unparsable: r.details };
    }
  }
  return e;
}
