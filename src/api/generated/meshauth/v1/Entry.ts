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
}
