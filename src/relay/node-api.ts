import {
  ApiClient,
  type ApiClientTls,
  type EntryMsg,
  type EventPage,
  type FollowEventsRequestMsg,
  type EventMsg,
  type QueryEventsRequestMsg,
  type StatusMsg,
} from '../api/index.js';

/** One meshauthd API as the relay uses it (an ApiClient over mTLS; tests may use a fake). */
export interface NodeApi {
  queryEvents(req: QueryEventsRequestMsg): Promise<EventPage>;
  followEvents(req: FollowEventsRequestMsg, signal: AbortSignal): AsyncIterable<EventMsg>;
  listEntries(): Promise<EntryMsg[]>;
  status(): Promise<StatusMsg>;
  close(): void;
}

/** A node the relay fans out to. */
export interface RelayNode {
  /** Node name, put on every event as `origin`. */
  name: string;
  /** host:port of its TCP API. */
  address: string;
  /** SPIFFE ID its API certificate must carry (optional; any SVID of the trust bundle otherwise). */
  spiffeId?: string;
}

/** NodeApi over the node's mTLS TCP API. */
export function tcpNodeApi(node: RelayNode, tls: () => ApiClientTls, timeoutMs: number): NodeApi {
  const client = new ApiClient({
    address: node.address,
    timeoutMs,
    tls: { ...tls(), ...(node.spiffeId ? { serverSpiffeId: node.spiffeId } : {}) },
  });
  return {
    queryEvents: (req) => client.queryEvents(req),
    followEvents: (req, signal) => client.followEvents(req, signal),
    listEntries: () => client.listEntries(),
    status: () => client.status(),
    close: () => client.close(),
  };
}
