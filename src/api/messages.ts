/**
 * The API's message shapes, generated from proto/meshauth/v1/audit.proto by proto-loader's type
 * generator (scripts/gen-proto.sh writes ./generated/). Requests are the generator's permissive
 * input types (every field optional, int64 as number, string or Long); what a peer receives is the
 * `__Output` type (camelCase, int64 as number, defaults filled in: LOADER_OPTIONS in ./proto.ts).
 */
import type { Entry__Output } from './generated/meshauth/v1/Entry.js';
import type { Event__Output } from './generated/meshauth/v1/Event.js';
import type { EventFilter, EventFilter__Output } from './generated/meshauth/v1/EventFilter.js';
import type {
  FlushEntriesRequest,
  FlushEntriesRequest__Output,
} from './generated/meshauth/v1/FlushEntriesRequest.js';
import type {
  FollowEventsRequest,
  FollowEventsRequest__Output,
} from './generated/meshauth/v1/FollowEventsRequest.js';
import type {
  QueryEventsRequest,
  QueryEventsRequest__Output,
} from './generated/meshauth/v1/QueryEventsRequest.js';
import type { QueryEventsResponse__Output } from './generated/meshauth/v1/QueryEventsResponse.js';
import type { Status__Output } from './generated/meshauth/v1/Status.js';
import type { NodeAnswer__Output } from './generated/meshauth/v1/NodeAnswer.js';
import type { SignedHead__Output } from './generated/meshauth/v1/SignedHead.js';
import type { SubmitHeadResponse__Output } from './generated/meshauth/v1/SubmitHeadResponse.js';
import type { WitnessedHead__Output } from './generated/meshauth/v1/WitnessedHead.js';
import type { PageEnd__Output } from './generated/meshauth/v1/PageEnd.js';
import type { ListEntriesResponse__Output } from './generated/meshauth/v1/ListEntriesResponse.js';

/** meshauth.v1.Event as received. */
export type EventMsg = Event__Output;
/** meshauth.v1.Entry as received. */
export type EntryMsg = Entry__Output;
/** meshauth.v1.Status as received. */
export type StatusMsg = Status__Output;
/** meshauth.v1.QueryEventsResponse as received (`item` names the field that is set). */
export type QueryEventsResponseMsg = QueryEventsResponse__Output;

/** meshauth.v1.EventFilter as a client writes it. */
export type EventFilterMsg = EventFilter;
/** meshauth.v1.QueryEventsRequest as a client writes it. */
export type QueryEventsRequestMsg = QueryEventsRequest;
/** meshauth.v1.FollowEventsRequest as a client writes it. */
export type FollowEventsRequestMsg = FollowEventsRequest;
/** meshauth.v1.FlushEntriesRequest as a client writes it. */
export type FlushEntriesRequestMsg = FlushEntriesRequest;

/** Requests as the server receives them. */
export type EventFilterIn = EventFilter__Output;
export type QueryEventsRequestIn = QueryEventsRequest__Output;
export type FollowEventsRequestIn = FollowEventsRequest__Output;
export type FlushEntriesRequestIn = FlushEntriesRequest__Output;

/** meshauth.v1.NodeAnswer: how one node answered a request fanned out by meshauth-relay. */
export type NodeAnswerMsg = NodeAnswer__Output;
/** meshauth.v1.PageEnd as received. */
export type PageEndMsg = PageEnd__Output;
/** meshauth.v1.ListEntriesResponse as received. */
export type ListEntriesResponseMsg = ListEntriesResponse__Output;
/** meshauth.v1.SignedHead as received. */
export type SignedHeadMsg = SignedHead__Output;
/** meshauth.v1.SubmitHeadResponse as received. */
export type SubmitHeadResponseMsg = SubmitHeadResponse__Output;
/** meshauth.v1.WitnessedHead as received. */
export type WitnessedHeadMsg = WitnessedHead__Output;
