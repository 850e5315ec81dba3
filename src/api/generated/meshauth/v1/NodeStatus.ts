// Original file: proto/meshauth/v1/audit.proto

import type { NodeAnswer as _meshauth_v1_NodeAnswer, NodeAnswer__Output as _meshauth_v1_NodeAnswer__Output } from '../../meshauth/v1/NodeAnswer.js';
import type { AuditStatus as _meshauth_v1_AuditStatus, AuditStatus__Output as _meshauth_v1_AuditStatus__Output } from '../../meshauth/v1/AuditStatus.js';
import type { Long } from '@grpc/proto-loader';

export interface NodeStatus {
  'answer'?: (_meshauth_v1_NodeAnswer | null);
  /**
   * The rest is empty when the node did not answer.
   */
  'version'?: (string);
  'startedAtMs'?: (number | string | Long);
  'datapathAttached'?: (boolean);
  'identitySource'?: (string);
  'identitySourceConnected'?: (boolean);
  'entries'?: (number | string | Long);
  'audit'?: (_meshauth_v1_AuditStatus | null);
}

export interface NodeStatus__Output {
  'answer': (_meshauth_v1_NodeAnswer__Output | null);
  /**
   * The rest is empty when the node did not answer.
   */
  'version': (string);
  'startedAtMs': (number);
  'datapathAttached': (boolean);
  'identitySource': (string);
  'identitySourceConnected': (boolean);
  'entries': (number);
  'audit': (_meshauth_v1_AuditStatus__Output | null);
}
