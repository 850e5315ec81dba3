import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { grpcDetailsReason } from '../../errors.js';
import { backoffMs } from '../../sync.js';
import { WorkloadApiError } from './errors.js';

/** Capped exponential backoff between reconnects (full jitter on the upper half). */
export interface RetryPolicy {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 250, maxMs: 30_000 };

/**
 * What happened to a watched stream:
 * - connected: the first message of a (re)opened stream arrived;
 * - unavailable: the stream failed or ended; it is reopened after `retryInMs`;
 * - permission-denied: the server refused the caller (no identity / not authorized); retried too;
 * - failed: the server rejected the request as invalid (InvalidArgument); not retried.
 */
export type StreamState =
  | { state: 'connected' }
  | { state: 'unavailable'; error: WorkloadApiError; retryInMs: number }
  | { state: 'permission-denied'; error: WorkloadApiError; retryInMs: number }
  | { state: 'failed'; error: WorkloadApiError };

export interface StreamHandlers<T> {
  onMessage(message: T): void;
  onState?(state: StreamState): void;
}

/** A server stream kept open until close(). */
export interface StreamWatch {
  close(): void;
  readonly closed: boolean;
}

/**
 * Keep a server-streaming call open: every message goes to onMessage; when the stream ends or
 * fails it is reopened with capped exponential backoff (reset by a received message), except after
 * InvalidArgument, which is final. A handler that throws is logged and does not stop the stream.
 */
export function watchStream<T>(
  name: string,
  open: () => grpc.ClientReadableStream<T>,
  handlers: StreamHandlers<T>,
  opts: { retry: RetryPolicy; logger?: Logger | undefined },
): StreamWatch {
  let call: grpc.ClientReadableStream<T> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let attempt = 0;
  let closed = false;
  const log = opts.logger;

  const safe = (f: () => void): void => {
    try {
      f();
    } catch (err) {
      log?.error({ event: 'stream_handler_failed', stream: name, err }, `${name}: handler threw`);
    }
  };

  const start = (): void => {
    timer = undefined;
    if (closed) return;
    let first = true;
    let finished = false;
    const c = open();
    call = c;
    c.on('data', (msg: T) => {
      if (closed || call !== c) return;
      if (first) {
        first = false;
        attempt = 0;
        safe(() => handlers.onState?.({ state: 'connected' }));
      }
      safe(() => handlers.onMessage(msg));
    });
    // The outcome is read from 'status'; 'error' only needs a listener so it is not thrown.
    c.on('error', () => undefined);
    c.on('status', (status: grpc.StatusObject) => {
      if (finished) return;
      finished = true;
      if (closed || call !== c) return;
      call = undefined;
      const ended = status.code === grpc.status.OK;
      const detail = ended
        ? 'stream ended by the server'
        : `${grpc.status[status.code] ?? status.code}: ${grpcDetailsReason(status.details)}`;
      const error = new WorkloadApiError(`${name}: ${detail}`, { grpcCode: status.code });
      if (status.code === grpc.status.INVALID_ARGUMENT) {
        log?.error(
          { event: 'stream_failed', stream: name, reason: detail },
          `${name}: request rejected, not retrying`,
        );
        safe(() => handlers.onState?.({ state: 'failed', error }));
        return;
      }
      const retryInMs = backoffMs(attempt, opts.retry.baseMs, opts.retry.maxMs);
      attempt++;
      log?.warn(
        { event: 'stream_retry', stream: name, reason: detail, retry_in_ms: retryInMs },
        `${name}: stream lost, reconnecting`,
      );
      safe(() =>
        handlers.onState?.(
          status.code === grpc.status.PERMISSION_DENIED
            ? { state: 'permission-denied', error, retryInMs }
            : { state: 'unavailable', error, retryInMs },
        ),
      );
      if (closed) return;
      timer = setTimeout(start, retryInMs);
      timer.unref();
    });
  };

  start();
  return {
    close(): void {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      const c = call;
      call = undefined;
      c?.cancel();
    },
    get closed(): boolean {
      return closed;
    },
  };
}
