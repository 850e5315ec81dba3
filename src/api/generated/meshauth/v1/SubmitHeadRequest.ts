// Original file: proto/meshauth/v1/witness.proto

import type { SignedHead as _meshauth_v1_SignedHead, SignedHead__Output as _meshauth_v1_SignedHead__Output } from '../../meshauth/v1/SignedHead.js';

export interface SubmitHeadRequest {
  'head'?: (_meshauth_v1_SignedHead | null);
}

export interface SubmitHeadRequest__Output {
  'head': (_meshauth_v1_SignedHead__Output | null);
}
