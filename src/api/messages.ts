/** Plain shapes of the proto messages as @grpc/proto-loader presents them (camelCase, longs as numbers). */

export interface EventMsg {
  seq: number;
  atMs: number;
  type: string;
  outcome: string;
  reason: string;
  localId: string;
  remoteId: string;
  node: string;
  direction: string;
  detailsJson: string;
  prevHash: string;
  hash: string;
}

export interface EventFilterMsg {
  identity?: string;
  node?: string;
  outcome?: string;
  reason?: string;
  types?: string[];
  sinceMs?: number;
  untilMs?: number;
}

export interface QueryEventsRequestMsg {
  filter?: EventFilterMsg | null;
  pageSize?: number;
  pageToken?: string;
  newestFirst?: boolean;
}

export interface QueryEventsResponseMsg {
  event?: EventMsg | null;
  pageEnd?: { nextPageToken: string } | null;
  item?: 'event' | 'pageEnd';
}

export interface FollowEventsRequestMsg {
  filter?: EventFilterMsg | null;
  afterSeq?: number | null;
  /** Set by proto-loader for proto3 optional fields (synthetic oneof). */
  _afterSeq?: string;
}

export interface EntryMsg {
  localId: string;
  remoteId: string;
  remoteNode: string;
  localIdentity: number;
  remoteIdentity: number;
  remoteNodeId: number;
  authType: number;
  expiresAtMs: number;
}

export interface StatusMsg {
  version: string;
  node: string;
  startedAtMs: number;
  datapathAttached: boolean;
  datapathMode: string;
  datapathDetail: string;
  identitySource: string;
  identitySourceConnected: boolean;
  identitySourceDetail: string;
  identities: Array<{ spiffeId: string; notAfterMs: number }>;
  counters: Record<string, number>;
  entries: number;
  audit: {
    lastSeq: number;
    rows: number;
    anchorSeq: number;
    bytes: number;
    queueDepth: number;
    dropped: number;
    path: string;
  } | null;
  versions: Record<string, string>;
}

export interface FlushEntriesRequestMsg {
  all?: boolean;
  localId?: string;
  remoteId?: string;
  node?: string;
}
