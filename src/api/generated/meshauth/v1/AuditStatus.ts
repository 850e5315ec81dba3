// Original file: proto/meshauth/v1/audit.proto

import type { Long } from '@grpc/proto-loader';

export interface AuditStatus {
  'lastSeq'?: (number | string | Long);
  'rows'?: (number | string | Long);
  'anchorSeq'?: (number | string | Long);
  'bytes'?: (number | string | Long);
  'queueDepth'?: (number | string | Long);
  'dropped'?: (number | string | Long);
  'path'?: (string);
}

export interface AuditStatus__Output {
  'lastSeq': (number);
  'rows': (number);
  'anchorSeq': (number);
  'bytes': (number);
  'queueDepth': (number);
  'dropped': (number);
  'path': (string);
}
