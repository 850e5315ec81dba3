// Original file: proto/meshauth/v1/witness.proto

import type { SignedHead as _meshauth_v1_SignedHead, SignedHead__Output as _meshauth_v1_SignedHead__Output } from '../../meshauth/v1/SignedHead.js';
import type { Long } from '@grpc/proto-loader';

export interface WitnessedHead {
  'head'?: (_meshauth_v1_SignedHead | null);
  'witnessedAtMs'?: (number | string | Long);
  /**
   * Seq of the head-witnessed event in this witness's trail.
   */
  'witnessSeq'?: (number | string | Long);
}

export interface WitnessedHead__Output {
  'head': (_meshauth_v1_SignedHead__Output | null);
  'witnessedAtMs': (number);
  /**
   * Seq of the head-witnessed event in this witness's trail.
   */
  'witnessSeq': (number);
}
