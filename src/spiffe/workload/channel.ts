import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ClosedError } from '../../errors.js';
import type { WorkloadEndpoint } from './address.js';
import {
  DEFAULT_RETRY,
  watchStream,
  type RetryPolicy,
  type StreamState,
  type StreamWatch,
} from './stream-watch.js';

/** Default gRPC receive limit for SVID and bundle messages (grpc-js default is 4 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Plaintext channel options: receive limit and a reconnect backoff in line with our retry policy. */
export function channelOptions(maxMessageBytes: number, retry: RetryPolicy): grpc.ChannelOptions {
  return {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.initial_reconnect_backoff_ms': Math.max(100, retry.baseMs),
    'grpc.max_reconnect_backoff_ms': Math.max(100, retry.maxMs),
    // Streams are reopened by watchStream; the channel itself does not retry calls.
    'grpc.enable_retries': 0,
  };
}

/** What a watched stream reports: each decoded update, and optionally its StreamState changes. */
export interface UpdateHandlers<U> {
  onUpdate(update: U): void;
  onState?(s: StreamState): void;
}

/**
 * One plaintext gRPC channel to a SPIRE agent socket and the streams watched over it, shared by
 * the Workload API and the Delegated Identity API clients. Streams reconnect by themselves
 * (watchStream); close() cancels them all and closes the channel.
 */
export class WatchedChannel {
  readonly client: grpc.Client;
  private readonly retry: RetryPolicy;
  private readonly logger: Logger | undefined;
  private readonly watches = new Set<StreamWatch>();
  private isClosed = false;

  /** `what` names the client in ClosedError messages. */
  constructor(
    private readonly what: string,
    Ctor: grpc.ServiceClientConstructor,
    endpoint: WorkloadEndpoint,
    opts: {
      maxMessageBytes?: number | undefined;
      retry?: RetryPolicy | undefined;
      logger?: Logger | undefined;
    },
  ) {
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.logger = opts.logger;
    this.client = new Ctor(
      endpoint.grpcTarget,
      grpc.credentials.createInsecure(),
      channelOptions(opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, this.retry),
    );
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Throws ClosedError once close() has run. */
  checkOpen(): void {
    if (this.isClosed) throw new ClosedError(this.what);
  }

  /**
   * Watch a server stream (see watchStream): every message is decoded and handed to onUpdate.
   * Throws ClosedError once close() has run.
   */
  watch<M, U>(
    name: string,
    open: () => grpc.ClientReadableStream<M>,
    decode: (message: M) => U,
    handlers: UpdateHandlers<U>,
  ): StreamWatch {
    this.checkOpen();
    const w = watchStream<M>(
      name,
      open,
      {
        onMessage: (m) => handlers.onUpdate(decode(m)),
        ...(handlers.onState ? { onState: handlers.onState } : {}),
      },
      { retry: this.retry, logger: this.logger },
    );
    this.watches.add(w);
    return {
      close: () => {
        w.close();
        this.watches.delete(w);
      },
      get closed() {
        return w.closed;
      },
    };
  }

  /** Number of open streams. */
  get size(): number {
    return this.watches.size;
  }

  /** Cancel every stream and close the channel. Idempotent. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const w of this.watches) w.close();
    this.watches.clear();
    this.client.close();
  }
}
