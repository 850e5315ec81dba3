// Original file: proto/meshauth/v1/witness.proto

import type { SignedHead as _meshauth_v1_SignedHead, SignedHead__Output as _meshauth_v1_SignedHead__Output } from '../../meshauth/v1/SignedHead.js';
import type { Long } from '@grpc/proto-loader';

export interface WitnessedHead {
  'head'?: (_meshauth_v1_SignedHead | null);
  /**
   * When this witness received the head, by its own clock (ms since the epoch): the time the
   * signer's SVID is checked at, not the time the head claims.
   */
  'witnessedAtMs'?: (number | string | Long);
  /**
   * Seq of the head-witnessed event in this witness's trail.
   */
  'witnessSeq'?: (number | string | Long);
}

export interface WitnessedHead__Output {
  'head': (_meshauth_v1_SignedHead__Output | null);
  /**
   * When this witness received the head, by its own clock (ms since the epoch): the time the
   * signer's SVID is checked at, not the time the head claims.
   */
  'witnessedAtMs': (number);
  /**
   * Seq of the head-witnessed event in this witness's trail.
   */
  'witnessSeq': (number);
}
