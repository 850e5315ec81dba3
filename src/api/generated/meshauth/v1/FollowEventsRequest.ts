// Original file: proto/meshauth/v1/audit.proto

import type { EventFilter as _meshauth_v1_EventFilter, EventFilter__Output as _meshauth_v1_EventFilter__Output } from '../../meshauth/v1/EventFilter.js';
import type { Long } from '@grpc/proto-loader';

export interface FollowEventsRequest {
  'filter'?: (_meshauth_v1_EventFilter | null);
  /**
   * Replay stored events with seq > after_seq first. Not set = only events written from now on.
   * Through meshauth-relay: applies to every node not named in after_seq_by_node.
   */
  'afterSeq'?: (number | string | Long);
  /**
   * meshauth-relay only (one node's API ignores it): per node, by name as in Event.origin, replay
   * that node's stored events with seq > this first, so a client resuming a cluster-wide follow
   * gets exactly the events after its cursor on each node. Nodes not named here and without
   * after_seq are followed from now on.
   */
  'afterSeqByNode'?: ({[key: string]: number | string | Long});
  '_afterSeq'?: "afterSeq";
}

export interface FollowEventsRequest__Output {
  'filter': (_meshauth_v1_EventFilter__Output | null);
  /**
   * Replay stored events with seq > after_seq first. Not set = only events written from now on.
   * Through meshauth-relay: applies to every node not named in after_seq_by_node.
   */
  'afterSeq'?: (number);
  /**
   * meshauth-relay only (one node's API ignores it): per node, by name as in Event.origin, replay
   * that node's stored events with seq > this first, so a client resuming a cluster-wide follow
   * gets exactly the events after its cursor on each node. Nodes not named here and without
   * after_seq are followed from now on.
   */
  'afterSeqByNode': ({[key: string]: number});
  '_afterSeq'?: "afterSeq";
}
