import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { parseWorkloadEndpoint, type WorkloadEndpoint } from './address.js';
import { WatchedChannel, type UpdateHandlers } from './channel.js';
import { decodeBundleMap, decodeDelegatedX509Svids, type ReceivedX509Svid } from './decode.js';
import type { ResponseRejection } from './errors.js';
import {
  delegatedIdentityService,
  type SubscribeToX509BundlesResponseMessage,
  type SubscribeToX509SvidsResponseMessage,
} from './proto.js';
import { formatSelector, parseSelector, SelectorError, type Selector } from './selector.js';
import type { RetryPolicy, StreamWatch } from './stream-watch.js';
import type { X509BundlesUpdate } from './workload-client.js';

export interface DelegatedIdentityClientOptions {
  /** The SPIRE agent's admin socket: absolute path or unix:///path. */
  adminSocket: string;
  /** gRPC receive limit in bytes (default 4 MiB). */
  maxMessageBytes?: number | undefined;
  retry?: RetryPolicy | undefined;
  logger?: Logger | undefined;
}

/** One state of the SVIDs the agent holds for a selector set. */
export interface DelegatedX509Update {
  /** SVIDs that passed the leaf checks (empty: no registration entry matches the selectors). */
  svids: ReceivedX509Svid[];
  federatesWith: string[];
  rejected: ResponseRejection[];
}

/**
 * Client of the SPIRE agent's Delegated Identity API. The caller (meshauthd) must be one of the
 * agent's authorized_delegates. One subscription per selector set; each reconnects by itself.
 */
export class DelegatedIdentityClient {
  readonly endpoint: WorkloadEndpoint;
  private readonly channel: WatchedChannel;

  constructor(opts: DelegatedIdentityClientOptions) {
    this.endpoint = parseWorkloadEndpoint(opts.adminSocket);
    this.channel = new WatchedChannel(
      'delegated identity client',
      delegatedIdentityService(),
      this.endpoint,
      opts,
    );
  }

  private open<T>(method: string, request: object): grpc.ClientReadableStream<T> {
    const client = this.channel.client;
    const fn = (client as unknown as Record<string, (req: object) => grpc.ClientReadableStream<T>>)[method]!;
    return fn.call(client, request);
  }

  /**
   * Subscribe to the X509-SVIDs of the registration entries matching these selectors ("type:value"
   * strings or Selector objects). Each update is the complete state.
   */
  subscribeX509Svids(
    selectors: ReadonlyArray<Selector | string>,
    handlers: UpdateHandlers<DelegatedX509Update>,
  ): StreamWatch {
    this.channel.checkOpen();
    const parsed = selectors.map((s) => (typeof s === 'string' ? parseSelector(s) : s));
    if (parsed.length === 0)
      throw new SelectorError('subscribe to X509-SVIDs: at least one selector is required');
    const label = parsed.map(formatSelector).join(',');
    return this.channel.watch(
      `delegated identity SubscribeToX509SVIDs [${label}]`,
      () =>
        this.open<SubscribeToX509SvidsResponseMessage>('SubscribeToX509SVIDs', {
          selectors: parsed.map((s) => ({ type: s.type, value: s.value })),
        }),
      decodeDelegatedX509Svids,
      handlers,
    );
  }

  /** Subscribe to the X.509 CA certificates of the agent's and the federated trust domains. */
  subscribeX509Bundles(handlers: UpdateHandlers<X509BundlesUpdate>): StreamWatch {
    return this.channel.watch(
      'delegated identity SubscribeToX509Bundles',
      () => this.open<SubscribeToX509BundlesResponseMessage>('SubscribeToX509Bundles', {}),
      (m): X509BundlesUpdate => decodeBundleMap(m.caCertificates),
      handlers,
    );
  }

  /** Number of open subscriptions (for tests and metrics). */
  get subscriptions(): number {
    return this.channel.size;
  }

  /** Cancel every subscription and close the channel. Idempotent. */
  close(): void {
    this.channel.close();
  }
}
