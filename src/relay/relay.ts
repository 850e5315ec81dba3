import type {
  EntryMsg,
  EventFilterMsg,
  EventMsg,
  NodeAnswerMsg,
  QueryEventsRequestMsg,
  StatusMsg,
} from '../api/index.js';
import type { Logger } from '../log.js';
import { systemClock, type Clock } from '../time.js';
import type { NodeApi, RelayNode } from './node-api.js';

/**
 * Stable reasons a node is missing from a relay answer: unreachable (the call failed), deadline
 * (no complete answer within the per-node deadline: a stalled node), malformed (it answered
 * with events that are not well-formed), refused (PERMISSION_DENIED / INVALID_ARGUMENT).
 */
export type NodeFailure = 'unreachable' | 'deadline' | 'malformed' | 'refused';

export interface RelayOptions {
  /** The nodes now (re-read on every request: nodes joining and leaving are picked up). */
  nodes: () => readonly RelayNode[];
  /** Connects to a node (kept and reused until the node leaves or its address changes). */
  connect: (node: RelayNode) => NodeApi;
  /** How long one node may take to answer a query, list or status. Default 5 s. */
  nodeDeadlineMs?: number;
  /** Follow: wait before reconnecting to a node whose stream ended or failed. Default 2 s. */
  followRetryMs?: number;
  /**
   * Follow: most events held for a client that reads slower than the nodes write. A node's stream
   * is not read further (gRPC flow control holds the node back) until the client drains the
   * queue below half of this. Default 10000.
   */
  followQueueMax?: number;
  clock?: Clock;
  logger?: Logger;
}

export interface RelayPage {
  events: EventMsg[];
  nextPageToken: string;
  nodes: NodeAnswerMsg[];
  partial: boolean;
}

/** Per-node paging state inside a relay page token. */
interface NodeCursor {
  /** The node's own page token to continue from ('' = start). */
  t: string;
  /** No more events on this node. */
  done?: boolean;
}

const TOKEN_PREFIX = 'r1.';
const HASH_RE = /^[0-9a-f]{64}$/;

class NodeError extends Error {
  constructor(
    readonly reason: NodeFailure,
    message: string,
  ) {
    super(message);
  }
}

/** Largest time a Date holds, ms since the epoch (ECMA-262 §21.4.1.1: 100,000,000 days). */
const MAX_DATE_MS = 8.64e15;

/** Checks one event a node sent; returns why it is malformed, or undefined. */
export function eventProblem(e: EventMsg): string | undefined {
  if (!e || typeof e !== 'object') return 'not an event';
  if (!Number.isSafeInteger(e.seq) || e.seq <= 0) return `seq ${String(e.seq)} is not a positive integer`;
  // a Date holds at most 8.64e15 ms: beyond it a time cannot be shown or merged by
  if (!Number.isSafeInteger(e.atMs) || e.atMs < 0 || e.atMs > MAX_DATE_MS)
    return `seq ${e.seq}: at_ms ${String(e.atMs)} is not a time`;
  if (typeof e.type !== 'string' || e.type === '') return `seq ${e.seq}: no type`;
  if (!HASH_RE.test(e.hash) || !HASH_RE.test(e.prevHash))
    return `seq ${e.seq}: hash or prev_hash is not 64 hex digits`;
  if (e.detailsJson) {
    try {
      JSON.parse(e.detailsJson);
    } catch {
      return `seq ${e.seq}: details_json is not JSON`;
    }
  }
  return undefined;
}

function grpcCodeOf(err: unknown): number | undefined {
  const c = (err as { grpcCode?: unknown }).grpcCode;
  return typeof c === 'number' ? c : undefined;
}

function failureOf(err: unknown): NodeError {
  if (err instanceof NodeError) return err;
  const code = grpcCodeOf(err);
  const msg = (err as Error).message ?? String(err);
  if (code === 4) return new NodeError('deadline', msg);
  // the API client cuts off a node that streams more events than the page asked for
  if (code === 11) return new NodeError('malformed', msg);
  if (code === 3 || code === 7 || code === 16) return new NodeError('refused', msg);
  return new NodeError('unreachable', msg);
}

/**
 * meshauth-relay's fan-out: one request to every node at once, each bounded by its own deadline,
 * answers merged by event time with the node named on every event (`origin`). A node that fails,
 * stalls past its deadline or sends malformed events is left out with a reason in `nodes` and the
 * answer is marked `partial`; it never holds up or spoils the other nodes' part.
 */
export class Relay {
  private readonly apis = new Map<string, { address: string; api: NodeApi }>();
  private readonly deadlineMs: number;
  private readonly clock: Clock;
  private closed = false;

  constructor(private readonly opts: RelayOptions) {
    this.deadlineMs = opts.nodeDeadlineMs ?? 5_000;
    this.clock = opts.clock ?? systemClock;
  }

  /** The current nodes, with connections opened for new ones and closed for those that left. */
  nodes(): RelayNode[] {
    const nodes = [...this.opts.nodes()];
    const names = new Set(nodes.map((n) => n.name));
    for (const [name, c] of this.apis) {
      const now = nodes.find((n) => n.name === name);
      if (!names.has(name) || now?.address !== c.address) {
        c.api.close();
        this.apis.delete(name);
      }
    }
    return nodes;
  }

  private api(node: RelayNode): NodeApi {
    let c = this.apis.get(node.name);
    if (!c) {
      c = { address: node.address, api: this.opts.connect(node) };
      this.apis.set(node.name, c);
    }
    return c.api;
  }

  /** Run fn for one node within the per-node deadline. */
  private async bounded<T>(node: RelayNode, fn: (api: NodeApi) => Promise<T>): Promise<T> {
    let timer: { cancel(): void } | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = this.clock.setTimeout(
        () => reject(new NodeError('deadline', `no answer within ${this.deadlineMs} ms`)),
        this.deadlineMs,
      );
    });
    try {
      return await Promise.race([Promise.resolve().then(() => fn(this.api(node))), deadline]);
    } catch (err) {
      throw failureOf(err);
    } finally {
      timer?.cancel();
    }
  }

  private answer(node: RelayNode, ok: boolean, events: number, err?: NodeError): NodeAnswerMsg {
    if (!ok && err) {
      this.opts.logger?.warn(
        {
          event: 'relay_node_failed',
          node: node.name,
          address: node.address,
          reason: err.reason,
          err: { message: err.message },
        },
        'node left out of a relay answer',
      );
    }
    return { node: node.name, ok, reason: err?.reason ?? '', message: err?.message ?? '', events };
  }

  /**
   * One page of the cluster's events: every node's matching events merged by time (ascending, or
   * descending with newestFirst), at most pageSize. The page token carries each node's own cursor.
   */
  async queryEvents(req: QueryEventsRequestMsg): Promise<RelayPage> {
    const pageSize = req.pageSize || 100;
    const cursors = decodeRelayToken(req.pageToken ?? '');
    const nodes = this.nodes();
    const desc = Boolean(req.newestFirst);
    const results = await Promise.all(
      nodes.map(async (node) => {
        const cur = Object.hasOwn(cursors, node.name) ? cursors[node.name]! : { t: '' };
        if (cur.done) return { node, events: [] as EventMsg[], next: cur, ok: true as const };
        try {
          const page = await this.bounded(node, (api) =>
            api.queryEvents({ ...req, pageSize, pageToken: cur.t }),
          );
          for (const e of page.events) {
            const p = eventProblem(e);
            if (p) throw new NodeError('malformed', p);
          }
          return {
            node,
            events: page.events.map((e) => ({ ...e, origin: node.name })),
            page,
            cur,
            ok: true as const,
          };
        } catch (err) {
          return { node, err: failureOf(err), cur, ok: false as const };
        }
      }),
    );
    // merge by time; ties by node name then seq keep the order stable
    const all: { e: EventMsg; node: string }[] = [];
    for (const r of results) if (r.ok) for (const e of r.events) all.push({ e, node: r.node.name });
    all.sort((a, b) => {
      const d = desc ? b.e.atMs - a.e.atMs : a.e.atMs - b.e.atMs;
      if (d !== 0) return d;
      if (a.node !== b.node) return a.node < b.node ? -1 : 1;
      return desc ? b.e.seq - a.e.seq : a.e.seq - b.e.seq;
    });
    const page = all.slice(0, pageSize);
    const taken = new Map<string, EventMsg[]>();
    for (const { e, node } of page) {
      const l = taken.get(node) ?? [];
      l.push(e);
      taken.set(node, l);
    }
    const next: Record<string, NodeCursor> = {};
    const answers: NodeAnswerMsg[] = [];
    let more = false;
    for (const r of results) {
      const name = r.node.name;
      if (!r.ok) {
        // keep its cursor: the next page asks it again from where it was
        next[name] = r.cur;
        more = true;
        answers.push(this.answer(r.node, false, 0, r.err));
        continue;
      }
      if (!('page' in r) || !r.page) {
        next[name] = r.next;
        answers.push(this.answer(r.node, true, 0));
        continue;
      }
      const mine = taken.get(name) ?? [];
      answers.push(this.answer(r.node, true, mine.length));
      if (mine.length === r.events.length) {
        // everything it sent is on this page: continue with its own next page token
        next[name] = r.page.nextPageToken ? { t: r.page.nextPageToken } : { t: '', done: true };
      } else {
        // part of it: continue after the last event taken (node tokens are s<seq>, see api/convert.ts)
        const last = mine.at(-1);
        next[name] = last ? { t: `s${last.seq}` } : r.cur;
      }
      if (!next[name]!.done) more = true;
    }
    const partial = answers.some((a) => !a.ok);
    return {
      events: page.map((p) => p.e),
      nextPageToken: more ? encodeRelayToken(next) : '',
      nodes: answers,
      partial,
    };
  }

  /** Every node's entries, each with `origin`. */
  async listEntries(): Promise<{ entries: EntryMsg[]; nodes: NodeAnswerMsg[]; partial: boolean }> {
    const nodes = this.nodes();
    const results = await Promise.all(
      nodes.map(async (node) => {
        try {
          const entries = await this.bounded(node, (api) => api.listEntries());
          return { node, entries: entries.map((e) => ({ ...e, origin: node.name })) };
        } catch (err) {
          return { node, err: failureOf(err) };
        }
      }),
    );
    const answers = results.map((r) =>
      'err' in r ? this.answer(r.node, false, 0, r.err) : this.answer(r.node, true, r.entries.length),
    );
    return {
      entries: results.flatMap((r) => ('entries' in r && r.entries ? r.entries : [])),
      nodes: answers,
      partial: answers.some((a) => !a.ok),
    };
  }

  /** Every node's status. */
  async statuses(): Promise<{ node: RelayNode; status?: StatusMsg; answer: NodeAnswerMsg }[]> {
    const nodes = this.nodes();
    return Promise.all(
      nodes.map(async (node) => {
        try {
          const status = await this.bounded(node, (api) => api.status());
          return { node, status, answer: this.answer(node, true, 0) };
        } catch (err) {
          return { node, answer: this.answer(node, false, 0, failureOf(err)) };
        }
      }),
    );
  }

  /**
   * Every node's new events as they are written, each with `origin`. A node whose stream fails or
   * sends a malformed event is reported once with a `node-unavailable` marker (seq 0, reason) and
   * reconnected after followRetryMs, resuming after the last seq it delivered, so nothing it wrote
   * meanwhile is missed; `node-available` marks its return. Ends when signal aborts.
   *
   * `resume` resumes a follow: each node first replays its stored events with seq above
   * `resume.byNode[name]`, else above `resume.all`; a node named in neither is followed from now on.
   */
  async *followEvents(
    filter: EventFilterMsg | undefined,
    signal: AbortSignal,
    resume: { all?: number; byNode?: Readonly<Record<string, number>> } = {},
  ): AsyncGenerator<EventMsg> {
    const byNode = new Map(Object.entries(resume.byNode ?? {}));
    const queue: EventMsg[] = [];
    let wake: (() => void) | undefined;
    const push = (e: EventMsg) => {
      queue.push(e);
      wake?.();
    };
    // backpressure: without it a node writing faster than the client reads (or a node streaming
    // without end) grows the queue until the relay runs out of memory
    const queueMax = Math.max(2, this.opts.followQueueMax ?? 10_000);
    let drained: { promise: Promise<void>; resolve: () => void } | undefined;
    const roomInQueue = async (): Promise<void> => {
      while (queue.length >= queueMax && !signal.aborted) {
        if (!drained) {
          let resolve!: () => void;
          const promise = new Promise<void>((r) => (resolve = r));
          drained = { promise, resolve };
        }
        await drained.promise;
      }
    };
    const releaseProducers = () => {
      const d = drained;
      drained = undefined;
      d?.resolve();
    };
    signal.addEventListener('abort', releaseProducers, { once: true });
    const retryMs = this.opts.followRetryMs ?? 2_000;
    const marker = (node: string, type: string, reason: string, message: string): EventMsg => ({
      seq: 0,
      atMs: this.clock.now(),
      type,
      outcome: type === 'node-unavailable' ? 'failure' : 'info',
      reason,
      localId: '',
      remoteId: '',
      node: '',
      direction: '',
      detailsJson: message ? JSON.stringify({ message: message.slice(0, 512) }) : '',
      prevHash: '',
      hash: '',
      origin: node,
    });
    const running = new Map<string, AbortController>();
    const followNode = async (node: RelayNode): Promise<void> => {
      // the client's cursor for this node; then the last seq this node delivered
      let after: number | undefined = byNode.get(node.name) ?? resume.all;
      let down = false;
      while (!signal.aborted && this.nodes().some((n) => n.name === node.name)) {
        const ctl = new AbortController();
        running.set(node.name, ctl);
        const onAbort = () => ctl.abort();
        signal.addEventListener('abort', onAbort, { once: true });
        try {
          const stream = this.api(node).followEvents(
            { ...(filter ? { filter } : {}), ...(after !== undefined ? { afterSeq: after } : {}) },
            ctl.signal,
          );
          if (down) {
            down = false;
            push(marker(node.name, 'node-available', '', ''));
          }
          for await (const e of stream) {
            const p = eventProblem(e);
            if (p) throw new NodeError('malformed', p);
            after = e.seq;
            push({ ...e, origin: node.name });
            await roomInQueue();
          }
          if (signal.aborted) return;
          throw new NodeError('unreachable', 'follow stream ended');
        } catch (err) {
          if (signal.aborted) return;
          const f = failureOf(err);
          ctl.abort();
          if (!down) {
            down = true;
            this.opts.logger?.warn(
              {
                event: 'relay_follow_node_failed',
                node: node.name,
                reason: f.reason,
                err: { message: f.message },
              },
              'node follow stream failed; retrying',
            );
            push(marker(node.name, 'node-unavailable', f.reason, f.message));
          }
          // a node that failed may have come back at another address, or with a fresh connection
          this.apis.get(node.name)?.api.close();
          this.apis.delete(node.name);
        } finally {
          signal.removeEventListener('abort', onAbort);
          running.delete(node.name);
        }
        await new Promise<void>((resolve) => {
          const t = this.clock.setTimeout(resolve, retryMs);
          signal.addEventListener(
            'abort',
            () => {
              t.cancel();
              resolve();
            },
            { once: true },
          );
        });
      }
    };
    const started = new Set<string>();
    const startNew = () => {
      for (const n of this.nodes()) {
        if (started.has(n.name)) continue;
        started.add(n.name);
        void followNode(n).finally(() => started.delete(n.name));
      }
    };
    startNew();
    const rescan = this.clock.setInterval(startNew, retryMs);
    try {
      while (!signal.aborted) {
        if (queue.length === 0) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            signal.addEventListener('abort', () => resolve(), { once: true });
          });
          wake = undefined;
          continue;
        }
        const e = queue.shift()!;
        if (drained && queue.length <= queueMax / 2) releaseProducers();
        yield e;
      }
    } finally {
      rescan.cancel();
      releaseProducers();
      for (const c of running.values()) c.abort();
    }
  }

  /** Close every node connection. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.apis.values()) c.api.close();
    this.apis.clear();
  }
}

export function encodeRelayToken(cursors: Record<string, NodeCursor>): string {
  return TOKEN_PREFIX + Buffer.from(JSON.stringify(cursors)).toString('base64url');
}

/** Throws RelayTokenError on a token this relay did not issue. */
export function decodeRelayToken(token: string): Record<string, NodeCursor> {
  if (!token) return {};
  if (!token.startsWith(TOKEN_PREFIX) || token.length > 65_536) throw new RelayTokenError(token);
  try {
    const v = JSON.parse(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString()) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    // no prototype: a token (client input) naming "__proto__" or a node named "constructor" is
    // just another key
    const out = Object.create(null) as Record<string, NodeCursor>;
    for (const [k, c] of Object.entries(v as Record<string, unknown>)) {
      const t = (c as { t?: unknown }).t;
      if (typeof t !== 'string' || (t !== '' && !/^s\d{1,16}$/.test(t))) throw new Error('bad cursor');
      out[k] = { t, ...((c as { done?: unknown }).done === true ? { done: true } : {}) };
    }
    return out;
  } catch {
    throw new RelayTokenError(token);
  }
}

export class RelayTokenError extends Error {
  constructor(token: string) {
    super(`page_token "${token.slice(0, 40)}" is not one this relay issued`);
  }
}
