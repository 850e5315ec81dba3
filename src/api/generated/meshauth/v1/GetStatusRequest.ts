// Original file: proto/meshauth/v1/audit.proto


export interface GetStatusRequest {
}

export interface GetStatusRequest__Output {
}
