import type { Logger } from 'pino';
import { verifyX509Svid, type Svid } from '../spiffe/index.js';
import {
  WorkloadApiClient,
  type RetryPolicy,
  type StreamState,
  type StreamWatch,
  type X509BundlesUpdate,
  type X509Context,
} from '../spiffe/workload/index.js';
import type { Clock } from '../time.js';
import { IdentitySourceBase, type Readiness } from './core.js';
import { WorkloadApiSourceError } from './errors.js';

export interface WorkloadApiSourceOptions {
  /** unix:///path, tcp://ip:port or an absolute socket path; default: SPIFFE_ENDPOINT_SOCKET. */
  address?: string | undefined;
  /** gRPC receive limit in bytes (default 4 MiB). */
  maxMessageBytes?: number | undefined;
  retry?: RetryPolicy | undefined;
  /** How long ready() waits for the first complete state (default 30 s). */
  readyTimeoutMs?: number | undefined;
  logger?: Logger | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  clock?: Clock | undefined;
}

/**
 * IdentitySource over the SPIFFE Workload API: the SVIDs SPIRE gives to this process (meshauthd's
 * own identity, or a node with a single workload whose SVIDs meshauthd is entitled to). Every SVID
 * of the stream is held (first one per SPIFFE ID); wanted IDs the stream lacks are reported as
 * 'no-identity'. PermissionDenied drops every SVID, as the Workload API standard asks.
 */
export class WorkloadApiSource extends IdentitySourceBase {
  readonly kind = 'workload-api' as const;
  private readonly client: WorkloadApiClient;
  private readonly logger: Logger | undefined;
  private readonly svidWatch: StreamWatch;
  private readonly bundleWatch: StreamWatch;
  private haveSvids = false;
  private haveBundles = false;
  private denied = false;
  private reportedMissing = '';

  constructor(opts: WorkloadApiSourceOptions = {}) {
    super('workload-api', {
      logger: opts.logger,
      clock: opts.clock,
      readyTimeoutMs: opts.readyTimeoutMs,
      closedError: () => new WorkloadApiSourceError('workload API source ready: closed'),
    });
    this.logger = opts.logger;
    this.client = new WorkloadApiClient({
      address: opts.address,
      maxMessageBytes: opts.maxMessageBytes,
      retry: opts.retry,
      logger: opts.logger,
      env: opts.env,
    });
    this.bundleWatch = this.client.watchX509Bundles({
      onUpdate: (u) => this.onBundles(u),
      onState: (s) => this.onStreamState('bundles', s),
    });
    this.svidWatch = this.client.watchX509Context({
      onUpdate: (c) => this.onContext(c),
      onState: (s) => this.onStreamState('svids', s),
    });
  }

  setWanted(spiffeIds: readonly string[]): void {
    if (this.closed) return;
    // Every SVID of the stream is held, wanted or not: the stream, not setWanted, decides.
    this.core.setWanted(spiffeIds, { keepUnwanted: true });
    this.reportMissing();
    this.core.wake();
  }

  /** SPIFFE IDs of the SVIDs currently held (the first is the Workload API's default). */
  spiffeIds(): string[] {
    return this.core.ids();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.core.close();
    this.svidWatch.close();
    this.bundleWatch.close();
    this.client.close();
  }

  protected readiness(): Readiness {
    return (this.haveSvids || this.denied) && this.haveBundles ? 'ready' : 'pending';
  }

  protected override timeoutError(ms: number): Error {
    const parts = [
      ...(this.haveSvids || this.denied ? [] : ['no SVID response']),
      ...(this.haveBundles ? [] : ['no trust bundle']),
    ];
    return new WorkloadApiSourceError(
      `workload API source ready: ${parts.join('; ')} within ${ms} ms from ${this.client.endpoint.uri}` +
        (this.core.lastError ? ` (last error: ${this.core.lastError})` : ''),
    );
  }

  private reportMissing(): void {
    if (!this.haveSvids && !this.denied) return;
    const missing = [...this.core.wanted].filter((id) => !this.core.get(id)).sort();
    const key = missing.join(',');
    if (key === this.reportedMissing) return;
    this.reportedMissing = key;
    if (missing.length === 0) return;
    const detail = this.denied
      ? `the Workload API gives this process no identity (PermissionDenied); wanted ${missing.join(', ')}`
      : `the Workload API does not give this process ${missing.join(', ')} (it holds ${this.core.ids().join(', ') || 'nothing'})`;
    this.core.state('no-identity', detail);
  }

  private onContext(ctx: X509Context): void {
    if (this.closed) return;
    for (const r of ctx.rejected) {
      this.logger?.warn(
        { event: 'svid_rejected', local_id: r.subject, reason: r.reason, err: r.message },
        'part of the Workload API response rejected',
      );
    }
    const next = new Map<string, Svid>();
    for (const r of ctx.svids) {
      if (next.has(r.spiffeId)) continue;
      const old = this.core.get(r.spiffeId);
      if (old && old.chainDer[0]!.equals(r.svid.chainDer[0]!)) {
        next.set(r.spiffeId, old);
        continue;
      }
      try {
        // The response carries the bundle of each SVID's trust domain: verify against it.
        verifyX509Svid(r.svid.chainDer, ctx.bundles, { now: new Date(this.core.clock.now()) });
        next.set(r.spiffeId, r.svid);
      } catch (err) {
        const reason = (err as { reason?: string }).reason ?? 'malformed';
        this.logger?.error(
          { event: 'svid_rejected', local_id: r.spiffeId, reason: `svid-${reason}`, err },
          'SVID from the Workload API failed verification; not used',
        );
        if (old && old.notAfter.getTime() > this.core.clock.now()) next.set(r.spiffeId, old);
      }
    }
    this.denied = false;
    this.haveSvids = true;
    this.core.replaceAll(next, 'no longer issued to this process');
    this.reportMissing();
    this.core.wake();
  }

  private onBundles(u: X509BundlesUpdate): void {
    if (!this.core.acceptBundleUpdate(u, 'Workload API')) return;
    this.haveBundles = true;
    this.core.wake();
  }

  private onStreamState(stream: string, s: StreamState): void {
    if (this.core.followStream(stream, s, `Workload API at ${this.client.endpoint.uri}`)) return;
    if (s.state === 'failed') {
      this.core.upstream('disconnected', s.error.message, { stream });
    } else if (s.state === 'permission-denied' && stream === 'svids') {
      // No identity for this process: drop every SVID (the standard's rule) and keep retrying.
      this.denied = true;
      this.core.replaceAll(new Map(), 'no-identity');
      this.reportMissing();
      this.core.wake();
    }
  }
}

/** Create the SPIFFE Workload API source (see WorkloadApiSourceOptions). */
export function createWorkloadApiSource(opts: WorkloadApiSourceOptions = {}): WorkloadApiSource {
  return new WorkloadApiSource(opts);
}
