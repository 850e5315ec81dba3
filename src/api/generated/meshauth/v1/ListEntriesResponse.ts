// Original file: proto/meshauth/v1/audit.proto

import type { Entry as _meshauth_v1_Entry, Entry__Output as _meshauth_v1_Entry__Output } from '../../meshauth/v1/Entry.js';
import type { NodeAnswer as _meshauth_v1_NodeAnswer, NodeAnswer__Output as _meshauth_v1_NodeAnswer__Output } from '../../meshauth/v1/NodeAnswer.js';

export interface ListEntriesResponse {
  'entries'?: (_meshauth_v1_Entry)[];
  /**
   * From meshauth-relay (see PageEnd).
   */
  'nodes'?: (_meshauth_v1_NodeAnswer)[];
  'partial'?: (boolean);
}

export interface ListEntriesResponse__Output {
  'entries': (_meshauth_v1_Entry__Output)[];
  /**
   * From meshauth-relay (see PageEnd).
   */
  'nodes': (_meshauth_v1_NodeAnswer__Output)[];
  'partial': (boolean);
}
