// Original file: proto/meshauth/v1/audit.proto

import type { Long } from '@grpc/proto-loader';

export interface Identity {
  'spiffeId'?: (string);
  /**
   * 0 when unknown.
   */
  'notAfterMs'?: (number | string | Long);
}

export interface Identity__Output {
  'spiffeId': (string);
  /**
   * 0 when unknown.
   */
  'notAfterMs': (number);
}
