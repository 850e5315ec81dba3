import { MeshauthError } from '../../errors.js';

/** An endpoint address (SPIFFE_ENDPOINT_SOCKET, admin socket) that cannot be used. */
export class WorkloadEndpointError extends MeshauthError {
  constructor(message: string) {
    super('MESHAUTH_ERR_WORKLOAD_ENDPOINT', message);
  }
}

/** A failed call or stream of the SPIFFE Workload API or the SPIRE Delegated Identity API. */
export class WorkloadApiError extends MeshauthError {
  /** gRPC status code of the failure, when it came from the server or the channel. */
  readonly grpcCode: number | undefined;

  constructor(message: string, options?: { cause?: unknown; grpcCode?: number }) {
    super('MESHAUTH_ERR_WORKLOAD_API', message, options);
    this.grpcCode = options?.grpcCode;
  }
}

/** Stable reasons a part of an SVID or bundle response is rejected (logged, never trusted). */
export type ResponseRejectReason =
  | 'bad-spiffe-id'
  | 'empty-chain'
  | 'malformed-certificate'
  | 'spiffe-id-mismatch'
  | 'malformed-key'
  | 'key-mismatch'
  | 'duplicate-hint'
  | 'bad-trust-domain'
  | 'empty-bundle'
  | 'malformed-bundle';

/** A part of a response that was rejected, with why. */
export interface ResponseRejection {
  reason: ResponseRejectReason;
  /** What was rejected: a SPIFFE ID, a hint or a bundle key. */
  subject: string;
  message: string;
}
