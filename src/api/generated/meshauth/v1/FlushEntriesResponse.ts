// Original file: proto/meshauth/v1/audit.proto


export interface FlushEntriesResponse {
  'removed'?: (number);
}

export interface FlushEntriesResponse__Output {
  'removed': (number);
}
