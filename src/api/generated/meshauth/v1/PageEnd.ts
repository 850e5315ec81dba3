// Original file: proto/meshauth/v1/audit.proto

import type { NodeAnswer as _meshauth_v1_NodeAnswer, NodeAnswer__Output as _meshauth_v1_NodeAnswer__Output } from '../../meshauth/v1/NodeAnswer.js';

export interface PageEnd {
  /**
   * Empty when there are no more events.
   */
  'nextPageToken'?: (string);
  /**
   * From meshauth-relay: how each node answered. Any node not ok makes the answer partial.
   */
  'nodes'?: (_meshauth_v1_NodeAnswer)[];
  /**
   * From meshauth-relay: true when some node's events are missing from this answer.
   */
  'partial'?: (boolean);
}

export interface PageEnd__Output {
  /**
   * Empty when there are no more events.
   */
  'nextPageToken': (string);
  /**
   * From meshauth-relay: how each node answered. Any node not ok makes the answer partial.
   */
  'nodes': (_meshauth_v1_NodeAnswer__Output)[];
  /**
   * From meshauth-relay: true when some node's events are missing from this answer.
   */
  'partial': (boolean);
}
