// Original file: proto/meshauth/v1/witness.proto


export interface SignHeadRequest {
  /**
   * Also hand the new head to the configured witnesses and report what they answered.
   */
  'publish'?: (boolean);
}

export interface SignHeadRequest__Output {
  /**
   * Also hand the new head to the configured witnesses and report what they answered.
   */
  'publish': (boolean);
}
