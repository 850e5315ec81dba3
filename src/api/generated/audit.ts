import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { AuditClient as _meshauth_v1_AuditClient, AuditDefinition as _meshauth_v1_AuditDefinition } from './meshauth/v1/Audit.js';
import type { AuditStatus as _meshauth_v1_AuditStatus, AuditStatus__Output as _meshauth_v1_AuditStatus__Output } from './meshauth/v1/AuditStatus.js';
import type { Entry as _meshauth_v1_Entry, Entry__Output as _meshauth_v1_Entry__Output } from './meshauth/v1/Entry.js';
import type { Event as _meshauth_v1_Event, Event__Output as _meshauth_v1_Event__Output } from './meshauth/v1/Event.js';
import type { EventFilter as _meshauth_v1_EventFilter, EventFilter__Output as _meshauth_v1_EventFilter__Output } from './meshauth/v1/EventFilter.js';
import type { FlushEntriesRequest as _meshauth_v1_FlushEntriesRequest, FlushEntriesRequest__Output as _meshauth_v1_FlushEntriesRequest__Output } from './meshauth/v1/FlushEntriesRequest.js';
import type { FlushEntriesResponse as _meshauth_v1_FlushEntriesResponse, FlushEntriesResponse__Output as _meshauth_v1_FlushEntriesResponse__Output } from './meshauth/v1/FlushEntriesResponse.js';
import type { FollowEventsRequest as _meshauth_v1_FollowEventsRequest, FollowEventsRequest__Output as _meshauth_v1_FollowEventsRequest__Output } from './meshauth/v1/FollowEventsRequest.js';
import type { GetStatusRequest as _meshauth_v1_GetStatusRequest, GetStatusRequest__Output as _meshauth_v1_GetStatusRequest__Output } from './meshauth/v1/GetStatusRequest.js';
import type { Identity as _meshauth_v1_Identity, Identity__Output as _meshauth_v1_Identity__Output } from './meshauth/v1/Identity.js';
import type { ListEntriesRequest as _meshauth_v1_ListEntriesRequest, ListEntriesRequest__Output as _meshauth_v1_ListEntriesRequest__Output } from './meshauth/v1/ListEntriesRequest.js';
import type { ListEntriesResponse as _meshauth_v1_ListEntriesResponse, ListEntriesResponse__Output as _meshauth_v1_ListEntriesResponse__Output } from './meshauth/v1/ListEntriesResponse.js';
import type { NodeAnswer as _meshauth_v1_NodeAnswer, NodeAnswer__Output as _meshauth_v1_NodeAnswer__Output } from './meshauth/v1/NodeAnswer.js';
import type { NodeStatus as _meshauth_v1_NodeStatus, NodeStatus__Output as _meshauth_v1_NodeStatus__Output } from './meshauth/v1/NodeStatus.js';
import type { PageEnd as _meshauth_v1_PageEnd, PageEnd__Output as _meshauth_v1_PageEnd__Output } from './meshauth/v1/PageEnd.js';
import type { QueryEventsRequest as _meshauth_v1_QueryEventsRequest, QueryEventsRequest__Output as _meshauth_v1_QueryEventsRequest__Output } from './meshauth/v1/QueryEventsRequest.js';
import type { QueryEventsResponse as _meshauth_v1_QueryEventsResponse, QueryEventsResponse__Output as _meshauth_v1_QueryEventsResponse__Output } from './meshauth/v1/QueryEventsResponse.js';
import type { Status as _meshauth_v1_Status, Status__Output as _meshauth_v1_Status__Output } from './meshauth/v1/Status.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  meshauth: {
    v1: {
      Audit: SubtypeConstructor<typeof grpc.Client, _meshauth_v1_AuditClient> & { service: _meshauth_v1_AuditDefinition }
      AuditStatus: MessageTypeDefinition<_meshauth_v1_AuditStatus, _meshauth_v1_AuditStatus__Output>
      Entry: MessageTypeDefinition<_meshauth_v1_Entry, _meshauth_v1_Entry__Output>
      Event: MessageTypeDefinition<_meshauth_v1_Event, _meshauth_v1_Event__Output>
      EventFilter: MessageTypeDefinition<_meshauth_v1_EventFilter, _meshauth_v1_EventFilter__Output>
      FlushEntriesRequest: MessageTypeDefinition<_meshauth_v1_FlushEntriesRequest, _meshauth_v1_FlushEntriesRequest__Output>
      FlushEntriesResponse: MessageTypeDefinition<_meshauth_v1_FlushEntriesResponse, _meshauth_v1_FlushEntriesResponse__Output>
      FollowEventsRequest: MessageTypeDefinition<_meshauth_v1_FollowEventsRequest, _meshauth_v1_FollowEventsRequest__Output>
      GetStatusRequest: MessageTypeDefinition<_meshauth_v1_GetStatusRequest, _meshauth_v1_GetStatusRequest__Output>
      Identity: MessageTypeDefinition<_meshauth_v1_Identity, _meshauth_v1_Identity__Output>
      ListEntriesRequest: MessageTypeDefinition<_meshauth_v1_ListEntriesRequest, _meshauth_v1_ListEntriesRequest__Output>
      ListEntriesResponse: MessageTypeDefinition<_meshauth_v1_ListEntriesResponse, _meshauth_v1_ListEntriesResponse__Output>
      NodeAnswer: MessageTypeDefinition<_meshauth_v1_NodeAnswer, _meshauth_v1_NodeAnswer__Output>
      NodeStatus: MessageTypeDefinition<_meshauth_v1_NodeStatus, _meshauth_v1_NodeStatus__Output>
      PageEnd: MessageTypeDefinition<_meshauth_v1_PageEnd, _meshauth_v1_PageEnd__Output>
      QueryEventsRequest: MessageTypeDefinition<_meshauth_v1_QueryEventsRequest, _meshauth_v1_QueryEventsRequest__Output>
      QueryEventsResponse: MessageTypeDefinition<_meshauth_v1_QueryEventsResponse, _meshauth_v1_QueryEventsResponse__Output>
      Status: MessageTypeDefinition<_meshauth_v1_Status, _meshauth_v1_Status__Output>
    }
  }
}

