import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ClosedError } from '../../errors.js';
import { parseWorkloadEndpoint, type WorkloadEndpoint } from './address.js';
import { channelOptions, DEFAULT_MAX_MESSAGE_BYTES } from './channel.js';
import { decodeBundleMap, decodeDelegatedX509Svids, type ReceivedX509Svid } from './decode.js';
import type { ResponseRejection } from './errors.js';
import {
  delegatedIdentityService,
  type SubscribeToX509BundlesResponseMessage,
  type SubscribeToX509SvidsResponseMessage,
} from './proto.js';
import { formatSelector, parseSelector, SelectorError, type Selector } from './selector.js';
import {
  DEFAULT_RETRY,
  watchStream,
  type RetryPolicy,
  type StreamState,
  type StreamWatch,
} from './stream-watch.js';
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
  private readonly client: grpc.Client;
  private readonly retry: RetryPolicy;
  private readonly logger: Logger | undefined;
  private readonly watches = new Set<StreamWatch>();
  private closed = false;

  constructor(opts: DelegatedIdentityClientOptions) {
    this.endpoint = parseWorkloadEndpoint(opts.adminSocket);
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.logger = opts.logger;
    const Ctor = delegatedIdentityService();
    this.client = new Ctor(
      this.endpoint.grpcTarget,
      grpc.credentials.createInsecure(),
      channelOptions(opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, this.retry),
    );
  }

  private open<T>(method: string, request: object): grpc.ClientReadableStream<T> {
    const fn = (this.client as unknown as Record<string, (req: object) => grpc.ClientReadableStream<T>>)[
      method
    ]!;
    return fn.call(this.client, request);
  }

  private track(w: StreamWatch): StreamWatch {
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

  /**
   * Subscribe to the X509-SVIDs of the registration entries matching these selectors ("type:value"
   * strings or Selector objects). Each update is the complete state.
   */
  subscribeX509Svids(
    selectors: ReadonlyArray<Selector | string>,
    handlers: { onUpdate(update: DelegatedX509Update): void; onState?(s: StreamState): void },
  ): StreamWatch {
    if (this.closed) throw new ClosedError('delegated identity client');
    const parsed = selectors.map((s) => (typeof s === 'string' ? parseSelector(s) : s));
    if (parsed.length === 0)
      throw new SelectorError('subscribe to X509-SVIDs: at least one selector is required');
    const label = parsed.map(formatSelector).join(',');
    return this.track(
      watchStream<SubscribeToX509SvidsResponseMessage>(
        `delegated identity SubscribeToX509SVIDs [${label}]`,
        () =>
          this.open('SubscribeToX509SVIDs', {
            selectors: parsed.map((s) => ({ type: s.type, value: s.value })),
          }),
        {
          onMessage: (m) => handlers.onUpdate(decodeDelegatedX509Svids(m)),
          ...(handlers.onState ? { onState: handlers.onState } : {}),
        },
        { retry: this.retry, logger: this.logger },
      ),
    );
  }

  /** Subscribe to the X.509 CA certificates of the agent's and the federated trust domains. */
  subscribeX509Bundles(handlers: {
    onUpdate(update: X509BundlesUpdate): void;
    onState?(s: StreamState): void;
  }): StreamWatch {
    if (this.closed) throw new ClosedError('delegated identity client');
    return this.track(
      watchStream<SubscribeToX509BundlesResponseMessage>(
        'delegated identity SubscribeToX509Bundles',
        () => this.open('SubscribeToX509Bundles', {}),
        {
          onMessage: (m) => handlers.onUpdate(decodeBundleMap(m.caCertificates)),
          ...(handlers.onState ? { onState: handlers.onState } : {}),
        },
        { retry: this.retry, logger: this.logger },
      ),
    );
  }

  /** Number of open subscriptions (for tests and metrics). */
  get subscriptions(): number {
    return this.watches.size;
  }

  /** Cancel every subscription and close the channel. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.close();
    this.watches.clear();
    this.client.close();
  }
}
