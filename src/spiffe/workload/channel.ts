import * as grpc from '@grpc/grpc-js';
import type { RetryPolicy } from './stream-watch.js';

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
