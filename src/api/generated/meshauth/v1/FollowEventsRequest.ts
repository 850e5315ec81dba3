// Original file: proto/meshauth/v1/audit.proto

import type { EventFilter as _meshauth_v1_EventFilter, EventFilter__Output as _meshauth_v1_EventFilter__Output } from '../../meshauth/v1/EventFilter.js';
import type { Long } from '@grpc/proto-loader';

export interface FollowEventsRequest {
  'filter'?: (_meshauth_v1_EventFilter | null);
  /**
   * Replay stored events with seq > after_seq first. Not set = only events written from now on.
   */
  'afterSeq'?: (number | string | Long);
  '_afterSeq'?: "afterSeq";
}

export interface FollowEventsRequest__Output {
  'filter': (_meshauth_v1_EventFilter__Output | null);
  /**
   * Replay stored events with seq > after_seq first. Not set = only events written from now on.
   */
  'afterSeq'?: (number);
  '_afterSeq'?: "afterSeq";
}
