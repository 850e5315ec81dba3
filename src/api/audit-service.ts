import * as grpc from '@grpc/grpc-js';
import type { AuditStore, StoredAuditEvent } from '../audit/index.js';
import type { Logger } from '../log.js';
import {
  decodePageToken,
  encodePageToken,
  entryToMsg,
  eventToMsg,
  filterToQuery,
  flushRequestOf,
  InvalidArgument,
  pageSizeOf,
  statusToMsg,
} from './convert.js';
import type { DaemonView } from './daemon-view.js';
import { writeMessage } from './stream-write.js';
import type {
  FlushEntriesRequestIn,
  FollowEventsRequestIn,
  QueryEventsRequestIn,
  QueryEventsResponseMsg,
  StatusMsg,
} from './messages.js';

/** Live numbers of the audit writer shown by GetStatus. */
export interface AuditQueueView {
  readonly queueDepth: number;
  readonly dropped: number;
}

export interface AuditServiceDeps {
  store: AuditStore;
  daemon: DaemonView;
  queue?: AuditQueueView;
  logger?: Logger;
  /** Follow streams also poll the store this often (events written by another process). Default 250 ms. */
  followPollMs?: number;
}

const FOLLOW_BATCH = 1000;

function grpcError(err: unknown, op: string): Partial<grpc.StatusObject> {
  if (err instanceof InvalidArgument)
    return { code: grpc.status.INVALID_ARGUMENT, details: `${op}: ${err.message}` };
  const code = (err as { code?: string }).code;
  if (code === 'MESHAUTH_ERR_AUDIT_QUERY')
    return { code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message };
  if (code === 'MESHAUTH_ERR_CLOSED')
    return { code: grpc.status.UNAVAILABLE, details: `${op}: shutting down` };
  return { code: grpc.status.INTERNAL, details: `${op}: ${(err as Error).message ?? String(err)}` };
}

export function auditServiceHandlers(deps: AuditServiceDeps): grpc.UntypedServiceImplementation & {
  closeFollowers(): void;
} {
  const { store, daemon } = deps;
  const pollMs = deps.followPollMs ?? 250;
  const followers = new Set<() => void>();

  return {
    closeFollowers(): void {
      for (const stop of followers) stop();
      followers.clear();
    },

    QueryEvents: async (call: grpc.ServerWritableStream<QueryEventsRequestIn, QueryEventsResponseMsg>) => {
      let events: StoredAuditEvent[];
      let limit: number;
      try {
        const r = call.request;
        const q = filterToQuery(r.filter);
        limit = pageSizeOf(r.pageSize);
        const cursor = decodePageToken(r.pageToken);
        if (cursor !== undefined) {
          if (r.newestFirst) q.beforeSeq = cursor;
          else q.afterSeq = cursor;
        }
        q.newestFirst = Boolean(r.newestFirst);
        // one more than asked tells whether another page exists
        q.limit = limit + 1;
        events = store.query(q);
      } catch (err) {
        call.emit('error', grpcError(err, 'QueryEvents'));
        return;
      }
      const more = events.length > limit;
      if (more) events = events.slice(0, limit);
      for (const e of events) {
        if (!(await writeMessage(call, { event: eventToMsg(e) }))) return;
      }
      const next = more ? encodePageToken(events.at(-1)!.seq) : '';
      if (await writeMessage(call, { pageEnd: { nextPageToken: next } })) call.end();
    },

    FollowEvents: async (call: grpc.ServerWritableStream<FollowEventsRequestIn, unknown>) => {
      let query;
      let cursor: number;
      try {
        query = filterToQuery(call.request.filter);
        const after = call.request.afterSeq;
        const hasAfter =
          call.request._afterSeq === 'afterSeq' || (after !== null && after !== undefined && after !== 0);
        if (hasAfter && (after === null || after === undefined || after < 0)) {
          throw new InvalidArgument('after_seq must be a non-negative seq');
        }
        cursor = hasAfter ? Number(after) : store.lastSeq();
        // A cursor past the head was not handed out by this trail (it was replaced, or the cursor
        // belongs to another node): following from it would skip every event up to it, silently.
        if (hasAfter && cursor > store.lastSeq()) {
          call.emit('error', {
            code: grpc.status.OUT_OF_RANGE,
            details: `FollowEvents: after_seq ${cursor} is past the head of this audit trail (seq ${store.lastSeq()}): a cursor of another trail? resume without it, or from a seq this trail has`,
          });
          return;
        }
      } catch (err) {
        call.emit('error', grpcError(err, 'FollowEvents'));
        return;
      }
      let stopped = false;
      let wake: (() => void) | undefined;
      const stop = () => {
        stopped = true;
        wake?.();
      };
      followers.add(stop);
      const off = store.onAppend(() => wake?.());
      call.on('cancelled', stop);
      call.on('close', stop);
      try {
        while (!stopped) {
          const head = store.lastSeq();
          const page = store.query({ ...query, afterSeq: cursor, limit: FOLLOW_BATCH });
          for (const e of page) {
            if (!(await writeMessage(call, eventToMsg(e)))) {
              stopped = true;
              break;
            }
            cursor = e.seq;
          }
          if (stopped) break;
          if (page.length === FOLLOW_BATCH) continue;
          // every matching row up to head was in this page
          cursor = Math.max(cursor, head);
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, pollMs);
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
          wake = undefined;
        }
      } catch (err) {
        if (!call.cancelled) call.emit('error', grpcError(err, 'FollowEvents'));
        return;
      } finally {
        off();
        followers.delete(stop);
      }
      if (!call.cancelled && !call.destroyed) call.end();
    },

    ListEntries: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      try {
        cb(null, { entries: daemon.listEntries().map(entryToMsg) });
      } catch (err) {
        cb(grpcError(err, 'ListEntries'));
      }
    },

    GetStatus: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<StatusMsg>) => {
      try {
        const st = store.stats();
        cb(
          null,
          statusToMsg(daemon.status(), {
            lastSeq: st.lastSeq,
            rows: st.rows,
            anchorSeq: st.anchorSeq,
            bytes: st.bytes,
            queueDepth: deps.queue?.queueDepth ?? 0,
            dropped: deps.queue?.dropped ?? 0,
            path: store.path,
          }),
        );
      } catch (err) {
        cb(grpcError(err, 'GetStatus'));
      }
    },

    FlushEntries: (
      call: grpc.ServerUnaryCall<FlushEntriesRequestIn, unknown>,
      cb: grpc.sendUnaryData<unknown>,
    ) => {
      try {
        const req = flushRequestOf(call.request);
        const removed = daemon.flush(req);
        deps.logger?.info(
          'all' in req
            ? { event: 'api_flush', all: true, removed }
            : { event: 'api_flush', local_id: req.localId, remote_id: req.remoteId, node: req.node, removed },
          'entries flushed through the API',
        );
        cb(null, { removed });
      } catch (err) {
        cb(grpcError(err, 'FlushEntries'));
      }
    },
  };
}
