// Original file: proto/meshauth/v1/audit.proto

import type { EventFilter as _meshauth_v1_EventFilter, EventFilter__Output as _meshauth_v1_EventFilter__Output } from '../../meshauth/v1/EventFilter.js';

export interface QueryEventsRequest {
  'filter'?: (_meshauth_v1_EventFilter | null);
  /**
   * 1..10000; 0 = 100.
   */
  'pageSize'?: (number);
  /**
   * From the previous response's next_page_token; empty = first page.
   */
  'pageToken'?: (string);
  /**
   * Highest seq first.
   */
  'newestFirst'?: (boolean);
}

export interface QueryEventsRequest__Output {
  'filter': (_meshauth_v1_EventFilter__Output | null);
  /**
   * 1..10000; 0 = 100.
   */
  'pageSize': (number);
  /**
   * From the previous response's next_page_token; empty = first page.
   */
  'pageToken': (string);
  /**
   * Highest seq first.
   */
  'newestFirst': (boolean);
}
