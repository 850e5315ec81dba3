import {
  AUDIT_EVENT_TYPES,
  isAuditEventType,
  isAuditOutcome,
  type AuditEventType,
  type AuditQuery,
  type StoredAuditEvent,
} from '../audit/index.js';
import { spiffeIdProblem } from '../spiffe/index.js';
import type { EntryView, FlushRequest, StatusView } from './daemon-view.js';
import type { EntryMsg, EventFilterIn, EventMsg, FlushEntriesRequestIn, StatusMsg } from './messages.js';

/** A request that fails validation; the server answers INVALID_ARGUMENT with this message. */
export class InvalidArgument extends Error {}

export const MAX_PAGE_SIZE = 10_000;
export const DEFAULT_PAGE_SIZE = 100;

export function eventToMsg(e: StoredAuditEvent): EventMsg {
  return {
    seq: e.seq,
    atMs: e.atMs,
    type: e.type,
    outcome: e.outcome ?? '',
    reason: e.reason ?? '',
    localId: e.localId ?? '',
    remoteId: e.remoteId ?? '',
    node: e.node ?? '',
    direction: e.direction ?? '',
    detailsJson: e.details ? JSON.stringify(e.details) : '',
    prevHash: e.prevHash,
    hash: e.hash,
    origin: '',
  };
}

/** The filter part of a request as a store query (throws InvalidArgument). */
export function filterToQuery(f: EventFilterIn | null | undefined): AuditQuery {
  const q: AuditQuery = {};
  if (!f) return q;
  if (f.identity) {
    if (!f.identity.startsWith('spiffe://')) {
      throw new InvalidArgument(
        `filter.identity must be a SPIFFE ID or pattern starting with spiffe://, got "${f.identity}"`,
      );
    }
    q.identity = f.identity;
  }
  if (f.node) q.node = f.node;
  if (f.outcome) {
    if (!isAuditOutcome(f.outcome)) {
      throw new InvalidArgument(`filter.outcome must be one of success, failure, info; got "${f.outcome}"`);
    }
    q.outcome = f.outcome;
  }
  if (f.reason) q.reason = f.reason;
  if (f.types && f.types.length > 0) {
    const bad = f.types.filter((t) => !isAuditEventType(t));
    if (bad.length > 0) {
      throw new InvalidArgument(
        `filter.types: unknown type(s) ${bad.join(', ')}; known: ${AUDIT_EVENT_TYPES.join(', ')}`,
      );
    }
    q.types = f.types as AuditEventType[];
  }
  const since = Number(f.sinceMs ?? 0);
  const until = Number(f.untilMs ?? 0);
  if (since < 0 || until < 0)
    throw new InvalidArgument('filter.since_ms and filter.until_ms must not be negative');
  if (since > 0) q.sinceMs = since;
  if (until > 0) q.untilMs = until;
  if (since > 0 && until > 0 && until <= since) {
    throw new InvalidArgument(`filter.until_ms (${until}) must be after filter.since_ms (${since})`);
  }
  return q;
}

export function pageSizeOf(n: number | undefined): number {
  const size = n ?? 0;
  if (size === 0) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 0 || size > MAX_PAGE_SIZE) {
    throw new InvalidArgument(
      `page_size must be 1..${MAX_PAGE_SIZE} (0 = ${DEFAULT_PAGE_SIZE}), got ${size}`,
    );
  }
  return size;
}

/** Page tokens are opaque to clients: `s<seq>`. */
export function encodePageToken(seq: number): string {
  return `s${seq}`;
}

export function decodePageToken(token: string | undefined): number | undefined {
  if (!token) return undefined;
  const m = /^s(\d{1,16})$/.exec(token);
  if (!m) throw new InvalidArgument(`page_token "${token}" is not one this server issued`);
  return Number(m[1]);
}

export function entryToMsg(e: EntryView): EntryMsg {
  return { ...e, origin: '' };
}

export function flushRequestOf(r: FlushEntriesRequestIn): FlushRequest {
  const pair = Boolean(r.localId || r.remoteId || r.node);
  if (r.all && pair)
    throw new InvalidArgument('flush: give either all=true or a pair (local_id, remote_id), not both');
  if (r.all) return { all: true };
  if (!r.localId || !r.remoteId) {
    throw new InvalidArgument('flush: give all=true, or both local_id and remote_id of the pair to flush');
  }
  for (const [k, v] of [
    ['local_id', r.localId],
    ['remote_id', r.remoteId],
  ] as const) {
    const problem = spiffeIdProblem(v);
    if (problem)
      throw new InvalidArgument(`flush: ${k} must be a SPIFFE ID, got ${JSON.stringify(v)} (${problem})`);
  }
  return r.node
    ? { localId: r.localId, remoteId: r.remoteId, node: r.node }
    : { localId: r.localId, remoteId: r.remoteId };
}

export function statusToMsg(s: StatusView, audit: StatusMsg['audit']): StatusMsg {
  return {
    version: s.version,
    node: s.node,
    startedAtMs: s.startedAtMs,
    datapathAttached: s.datapath.attached,
    datapathMode: s.datapath.mode,
    datapathDetail: s.datapath.detail ?? '',
    identitySource: s.identitySource.kind,
    identitySourceConnected: s.identitySource.connected,
    identitySourceDetail: s.identitySource.detail ?? '',
    identities: s.identities.map((i) => ({ spiffeId: i.spiffeId, notAfterMs: i.notAfterMs ?? 0 })),
    counters: s.counters,
    entries: s.entries,
    audit,
    versions: s.versions ?? {},
    nodes: [],
    partial: false,
  };
}
