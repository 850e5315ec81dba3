// Original file: proto/meshauth/v1/audit.proto

import type { Event as _meshauth_v1_Event, Event__Output as _meshauth_v1_Event__Output } from '../../meshauth/v1/Event.js';
import type { PageEnd as _meshauth_v1_PageEnd, PageEnd__Output as _meshauth_v1_PageEnd__Output } from '../../meshauth/v1/PageEnd.js';

export interface QueryEventsResponse {
  'event'?: (_meshauth_v1_Event | null);
  'pageEnd'?: (_meshauth_v1_PageEnd | null);
  'item'?: "event"|"pageEnd";
}

export interface QueryEventsResponse__Output {
  'event'?: (_meshauth_v1_Event__Output | null);
  'pageEnd'?: (_meshauth_v1_PageEnd__Output | null);
  'item'?: "event"|"pageEnd";
}
