import { MeshauthError } from '../errors.js';

/** The API server could not start (socket in use, bad TLS material, bad options). */
export class ApiServerError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_API_SERVER', message, options);
  }
}

/**
 * A client call failed; `grpcCode` is the gRPC status code. `message` is "<operation>: <reason>";
 * `reason` alone is what the server or the channel said (see grpcDetailsReason).
 */
export class ApiClientError extends MeshauthError {
  readonly reason: string;

  constructor(
    message: string,
    readonly grpcCode: number,
    options?: { cause?: unknown; reason?: string },
  ) {
    super('MESHAUTH_ERR_API_CLIENT', message, options);
    this.reason = options?.reason ?? message;
  }
}
