import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ClosedError, grpcDetailsReason } from '../../errors.js';
import type { TrustBundles } from '../svid.js';
import { resolveWorkloadEndpoint, type WorkloadEndpoint } from './address.js';
import { WatchedChannel, type UpdateHandlers } from './channel.js';
import { decodeBundleMap, decodeX509SvidResponse, type ReceivedX509Svid } from './decode.js';
import { WorkloadApiError, type ResponseRejection } from './errors.js';
import {
  WORKLOAD_API_HEADER,
  workloadApiService,
  type X509BundlesResponseMessage,
  type X509SvidResponseMessage,
} from './proto.js';
import type { RetryPolicy, StreamWatch } from './stream-watch.js';

export interface WorkloadApiClientOptions {
  /** unix:///path, tcp://ip:port or an absolute socket path; default: SPIFFE_ENDPOINT_SOCKET. */
  address?: string | undefined;
  /** gRPC receive limit in bytes (default 4 MiB). */
  maxMessageBytes?: number | undefined;
  retry?: RetryPolicy | undefined;
  logger?: Logger | undefined;
  /** Environment to read SPIFFE_ENDPOINT_SOCKET from (default process.env). */
  env?: NodeJS.ProcessEnv | undefined;
}

/** One state of the caller's X.509 identities, as the Workload API sent it. */
export interface X509Context {
  /** SVIDs that passed the leaf checks, in the server's order (the first is the default). */
  svids: ReceivedX509Svid[];
  /** The bundles the response carried: each SVID's own trust domain plus the federated ones. */
  bundles: TrustBundles;
  /** Parts of the response that were not trusted. */
  rejected: ResponseRejection[];
}

export interface X509BundlesUpdate {
  bundles: TrustBundles;
  rejected: ResponseRejection[];
}

/**
 * Client of the SPIFFE Workload API (FetchX509SVID, FetchX509Bundles) over a Unix socket or tcp.
 * Every call carries `workload.spiffe.io: true`. Streams reconnect by themselves (see watchStream).
 */
export class WorkloadApiClient {
  readonly endpoint: WorkloadEndpoint;
  private readonly channel: WatchedChannel;

  constructor(opts: WorkloadApiClientOptions = {}) {
    this.endpoint = resolveWorkloadEndpoint(opts.address, opts.env);
    this.channel = new WatchedChannel('workload API client', workloadApiService(), this.endpoint, opts);
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set(WORKLOAD_API_HEADER, 'true');
    return md;
  }

  private open<T>(method: string): grpc.ClientReadableStream<T> {
    const client = this.channel.client;
    const fn = (
      client as unknown as Record<string, (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<T>>
    )[method]!;
    return fn.call(client, {}, this.metadata());
  }

  /** Stream of the caller's X509-SVIDs; each update is the complete state. */
  watchX509Context(handlers: UpdateHandlers<X509Context>): StreamWatch {
    return this.channel.watch(
      'workload API FetchX509SVID',
      () => this.open<X509SvidResponseMessage>('FetchX509SVID'),
      decodeX509SvidResponse,
      handlers,
    );
  }

  /** Stream of the X.509 trust bundles; each update is the complete state. */
  watchX509Bundles(handlers: UpdateHandlers<X509BundlesUpdate>): StreamWatch {
    return this.channel.watch(
      'workload API FetchX509Bundles',
      () => this.open<X509BundlesResponseMessage>('FetchX509Bundles'),
      (m): X509BundlesUpdate => decodeBundleMap(m.bundles),
      handlers,
    );
  }

  /** The first message of FetchX509SVID (one attempt, no retry). */
  fetchX509Context(opts: { timeoutMs?: number } = {}): Promise<X509Context> {
    return this.first<X509SvidResponseMessage, X509Context>(
      'FetchX509SVID',
      decodeX509SvidResponse,
      opts.timeoutMs ?? 10_000,
    );
  }

  /** The first message of FetchX509Bundles (one attempt, no retry). */
  fetchX509Bundles(opts: { timeoutMs?: number } = {}): Promise<X509BundlesUpdate> {
    return this.first<X509BundlesResponseMessage, X509BundlesUpdate>(
      'FetchX509Bundles',
      (m) => decodeBundleMap(m.bundles),
      opts.timeoutMs ?? 10_000,
    );
  }

  private first<M, R>(method: string, decode: (m: M) => R, timeoutMs: number): Promise<R> {
    if (this.channel.closed) return Promise.reject(new ClosedError('workload API client'));
    return new Promise<R>((resolve, reject) => {
      const call = this.open<M>(method);
      let done = false;
      const finish = (f: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(t);
        call.cancel();
        f();
      };
      const t = setTimeout(
        () =>
          finish(() =>
            reject(
              new WorkloadApiError(`workload API ${method}: no response within ${timeoutMs} ms`, {
                grpcCode: grpc.status.DEADLINE_EXCEEDED,
              }),
            ),
          ),
        timeoutMs,
      );
      call.on('data', (m: M) => {
        finish(() => {
          try {
            resolve(decode(m));
          } catch (err) {
            reject(err);
          }
        });
      });
      call.on('error', (err: grpc.ServiceError) => {
        finish(() =>
          reject(
            new WorkloadApiError(
              `workload API ${method}: ${grpc.status[err.code] ?? err.code}: ${grpcDetailsReason(err.details)}`,
              { cause: err, grpcCode: err.code },
            ),
          ),
        );
      });
      call.on('end', () =>
        finish(() => reject(new WorkloadApiError(`workload API ${method}: stream ended without a message`))),
      );
    });
  }

  /** Cancel every stream and close the channel. Idempotent. */
  close(): void {
    this.channel.close();
  }
}
