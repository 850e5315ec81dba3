// Original file: proto/meshauth/v1/witness.proto


export interface SubmitHeadResponse {
  'accepted'?: (boolean);
  /**
   * The same head (seq and hash) was witnessed before.
   */
  'duplicate'?: (boolean);
  /**
   * When refused: malformed, untrusted-signer (also: the SVID is not valid at the witness's receive
   * time), wrong-node, bad-signature, replayed, conflicting-head, not-allowed, clock-skew (the
   * head's meshauth-time is too far from the witness's clock).
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
   * When refused: malformed, untrusted-signer (also: the SVID is not valid at the witness's receive
   * time), wrong-node, bad-signature, replayed, conflicting-head, not-allowed, clock-skew (the
   * head's meshauth-time is too far from the witness's clock).
   */
  'reason': (string);
  'message': (string);
}
