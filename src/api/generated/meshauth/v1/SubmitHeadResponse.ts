// Original file: proto/meshauth/v1/witness.proto


export interface SubmitHeadResponse {
  'accepted'?: (boolean);
  /**
   * The same head (seq and hash) was witnessed before.
   */
  'duplicate'?: (boolean);
  /**
   * When refused: malformed, untrusted-signer, wrong-node, bad-signature, replayed,
   * conflicting-head, not-allowed.
   */
  'reason'?: (string);
  'message'?: (string);
}

export interface SubmitHeadResponse__Output {
  'accepted': (boolean);
  /**
   * The same head (seq and hash) was witnessed before.
   */
  'duplicate': (boolean);
  /**
   * When refused: malformed, untrusted-signer, wrong-node, bad-signature, replayed,
   * conflicting-head, not-allowed.
   */
  'reason': (string);
  'message': (string);
}
