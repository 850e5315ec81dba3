// Original file: proto/meshauth/v1/witness.proto


export interface SignedHead {
  /**
   * The signed note: checkpoint text (origin, tree size = seq, base64 head hash, meshauth-time and
   * meshauth-node extension lines), a blank line, and the signature line (ECDSA, type 0x02).
   */
  'note'?: (string);
  /**
   * The signer's X509-SVID chain, DER, leaf first.
   */
  'certChain'?: (Buffer | Uint8Array | string)[];
}

export interface SignedHead__Output {
  /**
   * The signed note: checkpoint text (origin, tree size = seq, base64 head hash, meshauth-time and
   * meshauth-node extension lines), a blank line, and the signature line (ECDSA, type 0x02).
   */
  'note': (string);
  /**
   * The signer's X509-SVID chain, DER, leaf first.
   */
  'certChain': (Buffer)[];
}
