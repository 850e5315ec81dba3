import * as grpc from '@grpc/grpc-js';
import {
  writeMessage,
  type AuditHandlers,
  type EventFilterMsg,
  type FollowEventsRequestMsg,
  type QueryEventsRequestMsg,
  type StatusMsg,
} from '../api/index.js';
import type { Logger } from '../log.js';
import { VERSION } from '../version.js';
import { RelayTokenError, type Relay } from './relay.js';

/** Largest page the relay asks for (the nodes' own limit, api/convert.ts MAX_PAGE_SIZE). */
const MAX_PAGE_SIZE = 10_000;

const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The resume cursors of a follow request (after_seq, after_seq_by_node); a string = what is wrong. */
function resumeOf(r: FollowEventsRequestMsg): { all?: number; byNode: Record<string, number> } | string {
  const out: { all?: number; byNode: Record<string, number> } = {
    byNode: Object.create(null) as Record<string, number>,
  };
  // proto3 optional: with the loader's defaults an unset after_seq reads as 0; the oneof says
  // whether it was set (0 itself is a valid cursor: replay everything)
  const set =
    r._afterSeq === 'afterSeq' ||
    (r.afterSeq !== undefined && r.afterSeq !== null && Number(r.afterSeq) !== 0);
  const all = set ? Number(r.afterSeq) : undefined;
  if (all !== undefined) {
    if (!isSeq(all)) return 'after_seq must be a non-negative seq';
    out.all = all;
  }
  const by = (r.afterSeqByNode ?? {}) as Record<string, unknown>;
  const names = Object.keys(by);
  if (names.length > 10_000) return 'after_seq_by_node names more than 10000 nodes';
  for (const name of names) {
    const v = Number(by[name]);
    if (!name || name.length > 253 || !isSeq(v))
      return `after_seq_by_node: ${JSON.stringify(name.slice(0, 64))} needs a node name and a non-negative seq`;
    out.byNode[name] = v;
  }
  return out;
}

/**
 * meshauth.v1.Audit served by meshauth-relay for the whole cluster: QueryEvents, FollowEvents,
 * ListEntries and GetStatus fan out to every node (see Relay); FlushEntries is refused
 * (FAILED_PRECONDITION): entries are flushed on the node that holds them.
 */
export function relayAuditHandlers(relay: Relay, logger?: Logger): AuditHandlers {
  const followers = new Set<AbortController>();
  const startedAtMs = Date.now();
  return {
    closeFollowers() {
      for (const f of followers) f.abort();
      followers.clear();
    },

    QueryEvents: async (call: grpc.ServerWritableStream<QueryEventsRequestMsg, unknown>) => {
      const r = call.request;
      const pageSize = r.pageSize ?? 0;
      if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE_SIZE) {
        call.emit('error', {
          code: grpc.status.INVALID_ARGUMENT,
          details: `QueryEvents: page_size must be 1..${MAX_PAGE_SIZE} (0 = 100), got ${pageSize}`,
        });
        return;
      }
      let page;
      try {
        page = await relay.queryEvents(r);
      } catch (err) {
        const code = err instanceof RelayTokenError ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL;
        call.emit('error', { code, details: `QueryEvents: ${(err as Error).message}` });
        return;
      }
      // A filter every node refused is the client's mistake: say so rather than answer empty.
      const refused = page.nodes.filter((n) => n.reason === 'refused');
      if (
        page.nodes.length > 0 &&
        refused.length === page.nodes.length &&
        /invalid request|must|unknown/i.test(refused[0]!.message)
      ) {
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: refused[0]!.message });
        return;
      }
      for (const e of page.events) if (!(await writeMessage(call, { event: e }))) return;
      const end = {
        pageEnd: { nextPageToken: page.nextPageToken, nodes: page.nodes, partial: page.partial },
      };
      if (await writeMessage(call, end)) {
        const md = new grpc.Metadata();
        md.set('meshauth-partial', String(page.partial));
        call.end(md);
      }
    },

    FollowEvents: async (call: grpc.ServerWritableStream<FollowEventsRequestMsg, unknown>) => {
      const resume = resumeOf(call.request);
      if (typeof resume === 'string') {
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `FollowEvents: ${resume}` });
        return;
      }
      const ctl = new AbortController();
      followers.add(ctl);
      const stop = () => ctl.abort();
      call.on('cancelled', stop);
      call.on('close', stop);
      try {
        for await (const e of relay.followEvents(
          call.request.filter as EventFilterMsg | undefined,
          ctl.signal,
          resume,
        )) {
          if (!(await writeMessage(call, e))) break;
        }
      } catch (err) {
        logger?.error({ event: 'relay_follow_failed', err }, 'relay follow stream failed');
        if (!call.cancelled)
          call.emit('error', {
            code: grpc.status.INTERNAL,
            details: `FollowEvents: ${(err as Error).message}`,
          });
        return;
      } finally {
        ctl.abort();
        followers.delete(ctl);
      }
      if (!call.cancelled && !call.destroyed) call.end();
    },

    ListEntries: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      relay.listEntries().then(
        (r) => cb(null, r),
        (err: Error) => cb({ code: grpc.status.INTERNAL, details: `ListEntries: ${err.message}` }),
      );
    },

    GetStatus: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<StatusMsg>) => {
      relay.statuses().then(
        (all) => {
          const counters: Record<string, number> = {};
          let entries = 0;
          for (const s of all) {
            for (const [k, v] of Object.entries(s.status?.counters ?? {}))
              counters[k] = (counters[k] ?? 0) + Number(v);
            entries += Number(s.status?.entries ?? 0);
          }
          cb(null, {
            version: VERSION,
            node: 'meshauth-relay',
            startedAtMs,
            datapathAttached: false,
            datapathMode: 'relay',
            datapathDetail: '',
            identitySource: 'relay',
            identitySourceConnected: all.every((s) => s.answer.ok),
            identitySourceDetail: '',
            identities: [],
            counters,
            entries,
            audit: null,
            versions: {},
            partial: all.some((s) => !s.answer.ok),
            nodes: all.map((s) => ({
              answer: s.answer,
              version: s.status?.version ?? '',
              startedAtMs: s.status?.startedAtMs ?? 0,
              datapathAttached: s.status?.datapathAttached ?? false,
              identitySource: s.status?.identitySource ?? '',
              identitySourceConnected: s.status?.identitySourceConnected ?? false,
              entries: s.status?.entries ?? 0,
              audit: s.status?.audit ?? null,
            })),
          } as unknown as StatusMsg);
        },
        (err: Error) => cb({ code: grpc.status.INTERNAL, details: `GetStatus: ${err.message}` }),
      );
    },

    FlushEntries: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      cb({
        code: grpc.status.FAILED_PRECONDITION,
        details:
          'FlushEntries: meshauth-relay does not flush; flush on the node that holds the entry (--address)',
      });
    },
  };
}
