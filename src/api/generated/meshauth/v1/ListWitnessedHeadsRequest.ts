// Original file: proto/meshauth/v1/witness.proto


export interface ListWitnessedHeadsRequest {
  /**
   * SPIFFE ID of the node whose heads are wanted.
   */
  'spiffeId'?: (string);
  /**
   * The newest this many; 0 = 10000.
   */
  'limit'?: (number);
}

export interface ListWitnessedHeadsRequest__Output {
  /**
   * SPIFFE ID of the node whose heads are wanted.
   */
  'spiffeId': (string);
  /**
   * The newest this many; 0 = 10000.
   */
  'limit': (number);
}
