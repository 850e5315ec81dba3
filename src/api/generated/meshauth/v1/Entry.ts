// Original file: proto/meshauth/v1/audit.proto

import type { Long } from '@grpc/proto-loader';

export interface Entry {
  'localId'?: (string);
  'remoteId'?: (string);
  'remoteNode'?: (string);
  'localIdentity'?: (number);
  'remoteIdentity'?: (number);
  'remoteNodeId'?: (number);
  'authType'?: (number);
  'expiresAtMs'?: (number | string | Long);
  /**
   * The node holding the entry. Set by meshauth-relay; empty from a node.
   */
  'origin'?: (string);
}

export interface Entry__Output {
  'localId': (string);
  'remoteId': (string);
  'remoteNode': (string);
  'localIdentity': (number);
  'remoteIdentity': (number);
  'remoteNodeId': (number);
  'authType': (number);
  'expiresAtMs': (number);
  /**
   * The node holding the entry. Set by meshauth-relay; empty from a node.
   */
  'origin': (string);
}
