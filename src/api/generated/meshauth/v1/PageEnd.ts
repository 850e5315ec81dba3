// Original file: proto/meshauth/v1/audit.proto


export interface PageEnd {
  /**
   * Empty when there are no more events.
   */
  'nextPageToken'?: (string);
}

export interface PageEnd__Output {
  /**
   * Empty when there are no more events.
   */
  'nextPageToken': (string);
}
