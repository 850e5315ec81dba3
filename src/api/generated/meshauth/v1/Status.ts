// Original file: proto/meshauth/v1/audit.proto

import type { Identity as _meshauth_v1_Identity, Identity__Output as _meshauth_v1_Identity__Output } from '../../meshauth/v1/Identity.js';
import type { AuditStatus as _meshauth_v1_AuditStatus, AuditStatus__Output as _meshauth_v1_AuditStatus__Output } from '../../meshauth/v1/AuditStatus.js';
import type { NodeStatus as _meshauth_v1_NodeStatus, NodeStatus__Output as _meshauth_v1_NodeStatus__Output } from '../../meshauth/v1/NodeStatus.js';
import type { Long } from '@grpc/proto-loader';

export interface Status {
  'version'?: (string);
  'node'?: (string);
  'startedAtMs'?: (number | string | Long);
  'datapathAttached'?: (boolean);
  'datapathMode'?: (string);
  'datapathDetail'?: (string);
  'identitySource'?: (string);
  'identitySourceConnected'?: (boolean);
  'identitySourceDetail'?: (string);
  'identities'?: (_meshauth_v1_Identity)[];
  'counters'?: ({[key: string]: number | string | Long});
  'entries'?: (number | string | Long);
  'audit'?: (_meshauth_v1_AuditStatus | null);
  'versions'?: ({[key: string]: string});
  /**
   * From meshauth-relay: each node's status (or why it is missing) and whether any is.
   */
  'nodes'?: (_meshauth_v1_NodeStatus)[];
  'partial'?: (boolean);
}

export interface Status__Output {
  'version': (string);
  'node': (string);
  'startedAtMs': (number);
  'datapathAttached': (boolean);
  'datapathMode': (string);
  'datapathDetail': (string);
  'identitySource': (string);
  'identitySourceConnected': (boolean);
  'identitySourceDetail': (string);
  'identities': (_meshauth_v1_Identity__Output)[];
  'counters': ({[key: string]: number});
  'entries': (number);
  'audit': (_meshauth_v1_AuditStatus__Output | null);
  'versions': ({[key: string]: string});
  /**
   * From meshauth-relay: each node's status (or why it is missing) and whether any is.
   */
  'nodes': (_meshauth_v1_NodeStatus__Output)[];
  'partial': (boolean);
}
