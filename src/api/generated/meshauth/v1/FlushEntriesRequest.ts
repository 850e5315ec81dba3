// Original file: proto/meshauth/v1/audit.proto


export interface FlushEntriesRequest {
  /**
   * Either all = true, or local_id and remote_id (and optionally node) naming one pair.
   */
  'all'?: (boolean);
  'localId'?: (string);
  'remoteId'?: (string);
  'node'?: (string);
}

export interface FlushEntriesRequest__Output {
  /**
   * Either all = true, or local_id and remote_id (and optionally node) naming one pair.
   */
  'all': (boolean);
  'localId': (string);
  'remoteId': (string);
  'node': (string);
}
