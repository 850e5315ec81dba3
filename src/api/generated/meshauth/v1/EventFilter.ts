// Original file: proto/meshauth/v1/audit.proto

import type { Long } from '@grpc/proto-loader';

export interface EventFilter {
  /**
   * SPIFFE ID matching the local or the remote side: exact, or a glob pattern (*, ?, [...]).
   */
  'identity'?: (string);
  'node'?: (string);
  /**
   * success, failure or info.
   */
  'outcome'?: (string);
  'reason'?: (string);
  'types'?: (string)[];
  /**
   * Inclusive lower / exclusive upper bound on the event time, ms since epoch; 0 = unbounded.
   */
  'sinceMs'?: (number | string | Long);
  'untilMs'?: (number | string | Long);
}

export interface EventFilter__Output {
  /**
   * SPIFFE ID matching the local or the remote side: exact, or a glob pattern (*, ?, [...]).
   */
  'identity': (string);
  'node': (string);
  /**
   * success, failure or info.
   */
  'outcome': (string);
  'reason': (string);
  'types': (string)[];
  /**
   * Inclusive lower / exclusive upper bound on the event time, ms since epoch; 0 = unbounded.
   */
  'sinceMs': (number);
  'untilMs': (number);
}
