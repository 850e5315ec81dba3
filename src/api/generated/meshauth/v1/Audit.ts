// Original file: proto/meshauth/v1/audit.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { Event as _meshauth_v1_Event, Event__Output as _meshauth_v1_Event__Output } from '../../meshauth/v1/Event.js';
import type { FlushEntriesRequest as _meshauth_v1_FlushEntriesRequest, FlushEntriesRequest__Output as _meshauth_v1_FlushEntriesRequest__Output } from '../../meshauth/v1/FlushEntriesRequest.js';
import type { FlushEntriesResponse as _meshauth_v1_FlushEntriesResponse, FlushEntriesResponse__Output as _meshauth_v1_FlushEntriesResponse__Output } from '../../meshauth/v1/FlushEntriesResponse.js';
import type { FollowEventsRequest as _meshauth_v1_FollowEventsRequest, FollowEventsRequest__Output as _meshauth_v1_FollowEventsRequest__Output } from '../../meshauth/v1/FollowEventsRequest.js';
import type { GetStatusRequest as _meshauth_v1_GetStatusRequest, GetStatusRequest__Output as _meshauth_v1_GetStatusRequest__Output } from '../../meshauth/v1/GetStatusRequest.js';
import type { ListEntriesRequest as _meshauth_v1_ListEntriesRequest, ListEntriesRequest__Output as _meshauth_v1_ListEntriesRequest__Output } from '../../meshauth/v1/ListEntriesRequest.js';
import type { ListEntriesResponse as _meshauth_v1_ListEntriesResponse, ListEntriesResponse__Output as _meshauth_v1_ListEntriesResponse__Output } from '../../meshauth/v1/ListEntriesResponse.js';
import type { QueryEventsRequest as _meshauth_v1_QueryEventsRequest, QueryEventsRequest__Output as _meshauth_v1_QueryEventsRequest__Output } from '../../meshauth/v1/QueryEventsRequest.js';
import type { QueryEventsResponse as _meshauth_v1_QueryEventsResponse, QueryEventsResponse__Output as _meshauth_v1_QueryEventsResponse__Output } from '../../meshauth/v1/QueryEventsResponse.js';
import type { Status as _meshauth_v1_Status, Status__Output as _meshauth_v1_Status__Output } from '../../meshauth/v1/Status.js';

export interface AuditClient extends grpc.Client {
  /**
   * Remove entries (one pair or all), forcing re-authentication on the next packet.
   */
  FlushEntries(argument: _meshauth_v1_FlushEntriesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_FlushEntriesResponse__Output>): grpc.ClientUnaryCall;
  FlushEntries(argument: _meshauth_v1_FlushEntriesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_FlushEntriesResponse__Output>): grpc.ClientUnaryCall;
  FlushEntries(argument: _meshauth_v1_FlushEntriesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_FlushEntriesResponse__Output>): grpc.ClientUnaryCall;
  FlushEntries(argument: _meshauth_v1_FlushEntriesRequest, callback: grpc.requestCallback<_meshauth_v1_FlushEntriesResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Remove entries (one pair or all), forcing re-authentication on the next packet.
   */
  flushEntries(argument: _meshauth_v1_FlushEntriesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_FlushEntriesResponse__Output>): grpc.ClientUnaryCall;
  flushEntries(argument: _meshauth_v1_FlushEntriesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_FlushEntriesResponse__Output>): grpc.ClientUnaryCall;
  flushEntries(argument: _meshauth_v1_FlushEntriesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_FlushEntriesResponse__Output>): grpc.ClientUnaryCall;
  flushEntries(argument: _meshauth_v1_FlushEntriesRequest, callback: grpc.requestCallback<_meshauth_v1_FlushEntriesResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Events as they are written. With after_seq set, stored events after that seq are sent first,
   * so a client that reconnects with the last seq it saw misses nothing.
   */
  FollowEvents(argument: _meshauth_v1_FollowEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_Event__Output>;
  FollowEvents(argument: _meshauth_v1_FollowEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_Event__Output>;
  /**
   * Events as they are written. With after_seq set, stored events after that seq are sent first,
   * so a client that reconnects with the last seq it saw misses nothing.
   */
  followEvents(argument: _meshauth_v1_FollowEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_Event__Output>;
  followEvents(argument: _meshauth_v1_FollowEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_Event__Output>;
  
  /**
   * Daemon status: datapath, identity source, counters, versions, audit trail.
   */
  GetStatus(argument: _meshauth_v1_GetStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_Status__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _meshauth_v1_GetStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_Status__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _meshauth_v1_GetStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_Status__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _meshauth_v1_GetStatusRequest, callback: grpc.requestCallback<_meshauth_v1_Status__Output>): grpc.ClientUnaryCall;
  /**
   * Daemon status: datapath, identity source, counters, versions, audit trail.
   */
  getStatus(argument: _meshauth_v1_GetStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_Status__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _meshauth_v1_GetStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_Status__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _meshauth_v1_GetStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_Status__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _meshauth_v1_GetStatusRequest, callback: grpc.requestCallback<_meshauth_v1_Status__Output>): grpc.ClientUnaryCall;
  
  /**
   * Live authentication entries with SPIFFE IDs resolved.
   */
  ListEntries(argument: _meshauth_v1_ListEntriesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_ListEntriesResponse__Output>): grpc.ClientUnaryCall;
  ListEntries(argument: _meshauth_v1_ListEntriesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_ListEntriesResponse__Output>): grpc.ClientUnaryCall;
  ListEntries(argument: _meshauth_v1_ListEntriesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_ListEntriesResponse__Output>): grpc.ClientUnaryCall;
  ListEntries(argument: _meshauth_v1_ListEntriesRequest, callback: grpc.requestCallback<_meshauth_v1_ListEntriesResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Live authentication entries with SPIFFE IDs resolved.
   */
  listEntries(argument: _meshauth_v1_ListEntriesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_ListEntriesResponse__Output>): grpc.ClientUnaryCall;
  listEntries(argument: _meshauth_v1_ListEntriesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_meshauth_v1_ListEntriesResponse__Output>): grpc.ClientUnaryCall;
  listEntries(argument: _meshauth_v1_ListEntriesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_meshauth_v1_ListEntriesResponse__Output>): grpc.ClientUnaryCall;
  listEntries(argument: _meshauth_v1_ListEntriesRequest, callback: grpc.requestCallback<_meshauth_v1_ListEntriesResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Stored events matching the filter, one page, in seq order. The last message carries the cursor
   * for the next page (empty when there is none).
   */
  QueryEvents(argument: _meshauth_v1_QueryEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_QueryEventsResponse__Output>;
  QueryEvents(argument: _meshauth_v1_QueryEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_QueryEventsResponse__Output>;
  /**
   * Stored events matching the filter, one page, in seq order. The last message carries the cursor
   * for the next page (empty when there is none).
   */
  queryEvents(argument: _meshauth_v1_QueryEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_QueryEventsResponse__Output>;
  queryEvents(argument: _meshauth_v1_QueryEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_meshauth_v1_QueryEventsResponse__Output>;
  
}

export interface AuditHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Remove entries (one pair or all), forcing re-authentication on the next packet.
   */
  FlushEntries: grpc.handleUnaryCall<_meshauth_v1_FlushEntriesRequest__Output, _meshauth_v1_FlushEntriesResponse>;
  
  /**
   * Events as they are written. With after_seq set, stored events after that seq are sent first,
   * so a client that reconnects with the last seq it saw misses nothing.
   */
  FollowEvents: grpc.handleServerStreamingCall<_meshauth_v1_FollowEventsRequest__Output, _meshauth_v1_Event>;
  
  /**
   * Daemon status: datapath, identity source, counters, versions, audit trail.
   */
  GetStatus: grpc.handleUnaryCall<_meshauth_v1_GetStatusRequest__Output, _meshauth_v1_Status>;
  
  /**
   * Live authentication entries with SPIFFE IDs resolved.
   */
  ListEntries: grpc.handleUnaryCall<_meshauth_v1_ListEntriesRequest__Output, _meshauth_v1_ListEntriesResponse>;
  
  /**
   * Stored events matching the filter, one page, in seq order. The last message carries the cursor
   * for the next page (empty when there is none).
   */
  QueryEvents: grpc.handleServerStreamingCall<_meshauth_v1_QueryEventsRequest__Output, _meshauth_v1_QueryEventsResponse>;
  
}

export interface AuditDefinition extends grpc.ServiceDefinition {
  FlushEntries: MethodDefinition<_meshauth_v1_FlushEntriesRequest, _meshauth_v1_FlushEntriesResponse, _meshauth_v1_FlushEntriesRequest__Output, _meshauth_v1_FlushEntriesResponse__Output>
  FollowEvents: MethodDefinition<_meshauth_v1_FollowEventsRequest, _meshauth_v1_Event, _meshauth_v1_FollowEventsRequest__Output, _meshauth_v1_Event__Output>
  GetStatus: MethodDefinition<_meshauth_v1_GetStatusRequest, _meshauth_v1_Status, _meshauth_v1_GetStatusRequest__Output, _meshauth_v1_Status__Output>
  ListEntries: MethodDefinition<_meshauth_v1_ListEntriesRequest, _meshauth_v1_ListEntriesResponse, _meshauth_v1_ListEntriesRequest__Output, _meshauth_v1_ListEntriesResponse__Output>
  QueryEvents: MethodDefinition<_meshauth_v1_QueryEventsRequest, _meshauth_v1_QueryEventsResponse, _meshauth_v1_QueryEventsRequest__Output, _meshauth_v1_QueryEventsResponse__Output>
}
