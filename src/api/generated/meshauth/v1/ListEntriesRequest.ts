// Original file: proto/meshauth/v1/audit.proto


export interface ListEntriesRequest {
}

export interface ListEntriesRequest__Output {
}
