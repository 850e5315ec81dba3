import type { Logger } from 'pino';
import { MeshauthError } from '../errors.js';
import { verifyX509Svid } from '../spiffe/index.js';
import {
  WorkloadApiClient,
  type RetryPolicy,
  type StreamState,
  type StreamWatch,
  type X509BundlesUpdate,
  type X509Context,
} from '../spiffe/workload/index.js';
import type { IdentityEvent, IdentitySource, Svid, TrustBundles } from './source.js';
import { IdentityEvents } from './events.js';

export class WorkloadApiSourceError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_WORKLOAD_API_SOURCE', message, options);
  }
}

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
}

/**
 * IdentitySource over the SPIFFE Workload API: the SVIDs SPIRE gives to this process (meshauthd's
 * own identity, or a node with a single workload whose SVIDs meshauthd is entitled to). Every SVID
 * of the stream is held (first one per SPIFFE ID); wanted IDs the stream lacks are reported as
 * 'no-identity'. PermissionDenied drops every SVID, as the Workload API standard asks.
 */
export class WorkloadApiSource implements IdentitySource {
  readonly kind = 'workload-api' as const;
  private readonly client: WorkloadApiClient;
  private readonly logger: Logger | undefined;
  private readonly readyTimeoutMs: number;
  private readonly events: IdentityEvents;
  private readonly svidWatch: StreamWatch;
  private readonly bundleWatch: StreamWatch;
  private held = new Map<string, Svid>();
  private wanted = new Set<string>();
  private currentBundles: TrustBundles = new Map();
  private haveSvids = false;
  private haveBundles = false;
  private denied = false;
  private connection: 'connected' | 'disconnected' | undefined;
  private lastError: string | undefined;
  private reportedMissing = '';
  private readonly waiters = new Set<() => void>();
  private closed = false;

  constructor(opts: WorkloadApiSourceOptions = {}) {
    this.logger = opts.logger;
    this.events = new IdentityEvents(opts.logger);
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
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
    this.wanted = new Set(spiffeIds);
    this.reportMissing();
    this.wake();
  }

  svid(spiffeId: string): Svid | undefined {
    const s = this.held.get(spiffeId);
    return s && s.notAfter.getTime() > Date.now() ? s : undefined;
  }

  /** SPIFFE IDs of the SVIDs currently held (the first is the Workload API's default). */
  spiffeIds(): string[] {
    return [...this.held.keys()];
  }

  bundles(): TrustBundles {
    return this.currentBundles;
  }

  subscribe(listener: (event: IdentityEvent) => void): () => void {
    return this.events.subscribe(listener);
  }

  ready(): Promise<void> {
    if (this.closed) return Promise.reject(new WorkloadApiSourceError('workload API source ready: closed'));
    if (this.settled()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (this.closed) {
          done();
          reject(new WorkloadApiSourceError('workload API source ready: closed'));
        } else if (this.settled()) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        const parts = [
          ...(this.haveSvids || this.denied ? [] : ['no SVID response']),
          ...(this.haveBundles ? [] : ['no trust bundle']),
        ];
        reject(
          new WorkloadApiSourceError(
            `workload API source ready: ${parts.join('; ')} within ${this.readyTimeoutMs} ms from ${this.client.endpoint.uri}` +
              (this.lastError ? ` (last error: ${this.lastError})` : ''),
          ),
        );
      }, this.readyTimeoutMs);
      timer.unref();
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.svidWatch.close();
    this.bundleWatch.close();
    this.client.close();
    this.held.clear();
    this.wake();
    this.events.clear();
  }

  private settled(): boolean {
    return (this.haveSvids || this.denied) && this.haveBundles;
  }

  private wake(): void {
    for (const f of [...this.waiters]) f();
  }

  private emit(e: IdentityEvent): void {
    this.events.emit(e);
  }

  private reportMissing(): void {
    if (!this.haveSvids && !this.denied) return;
    const missing = [...this.wanted].filter((id) => !this.held.has(id)).sort();
    const key = missing.join(',');
    if (key === this.reportedMissing) return;
    this.reportedMissing = key;
    if (missing.length === 0) return;
    const detail = this.denied
      ? `the Workload API gives this process no identity (PermissionDenied); wanted ${missing.join(', ')}`
      : `the Workload API does not give this process ${missing.join(', ')} (it holds ${[...this.held.keys()].join(', ') || 'nothing'})`;
    this.logger?.warn({ event: 'no_identity', reason: detail }, 'no SVID for wanted identities');
    this.emit({ type: 'source-state', state: 'no-identity', detail });
  }

  private replaceAll(next: Map<string, Svid>, reason: string): void {
    const previous = this.held;
    this.held = next;
    for (const [id, old] of previous) {
      if (!next.has(id)) {
        this.logger?.info({ event: 'svid_removed', local_id: id, reason }, 'SVID dropped');
        this.emit({ type: 'svid-removed', spiffeId: id, reason });
      } else {
        const now = next.get(id)!;
        if (now !== old) {
          this.logger?.info(
            {
              event: 'svid_rotated',
              local_id: id,
              serial: now.leaf.serialNumber,
              not_after: now.notAfter.toISOString(),
            },
            'SVID rotated',
          );
          this.emit({ type: 'svid-updated', spiffeId: id, svid: now, previousNotAfter: old.notAfter });
        }
      }
    }
    for (const [id, s] of next) {
      if (!previous.has(id)) {
        this.logger?.info(
          {
            event: 'svid_received',
            local_id: id,
            serial: s.leaf.serialNumber,
            not_after: s.notAfter.toISOString(),
          },
          'SVID received',
        );
        this.emit({ type: 'svid-updated', spiffeId: id, svid: s });
      }
    }
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
      const old = this.held.get(r.spiffeId);
      if (old && old.chainDer[0]!.equals(r.svid.chainDer[0]!)) {
        next.set(r.spiffeId, old);
        continue;
      }
      try {
        // The response carries the bundle of each SVID's trust domain: verify against it.
        verifyX509Svid(r.svid.chainDer, ctx.bundles);
        next.set(r.spiffeId, r.svid);
      } catch (err) {
        const reason = (err as { reason?: string }).reason ?? 'malformed';
        this.logger?.error(
          { event: 'svid_rejected', local_id: r.spiffeId, reason: `svid-${reason}`, err },
          'SVID from the Workload API failed verification; not used',
        );
        if (old && old.notAfter.getTime() > Date.now()) next.set(r.spiffeId, old);
      }
    }
    this.denied = false;
    this.haveSvids = true;
    this.replaceAll(next, 'no longer issued to this process');
    this.reportMissing();
    this.wake();
  }

  private onBundles(u: X509BundlesUpdate): void {
    if (this.closed) return;
    for (const r of u.rejected) {
      this.logger?.warn(
        { event: 'bundle_rejected', reason: r.reason, trust_domain: r.subject, err: r.message },
        'trust bundle entry rejected',
      );
    }
    if (u.bundles.size === 0) {
      this.logger?.error(
        { event: 'bundle_rejected', reason: 'empty-bundle-set' },
        'Workload API sent no usable trust bundle; keeping the previous one',
      );
      return;
    }
    this.currentBundles = u.bundles;
    this.haveBundles = true;
    this.emit({ type: 'bundles-updated', bundles: u.bundles });
    this.wake();
  }

  private onStreamState(stream: string, s: StreamState): void {
    if (this.closed) return;
    if (s.state === 'connected') {
      if (this.connection !== 'connected') {
        this.connection = 'connected';
        this.emit({
          type: 'source-state',
          state: 'connected',
          detail: `Workload API at ${this.client.endpoint.uri}`,
        });
      }
      return;
    }
    this.lastError = s.error.message;
    if (s.state === 'permission-denied') {
      if (stream === 'svids') {
        // No identity for this process: drop every SVID (the standard's rule) and keep retrying.
        this.denied = true;
        this.replaceAll(new Map(), 'no-identity');
        this.reportMissing();
        this.wake();
      }
      return;
    }
    if (this.connection !== 'disconnected') {
      this.connection = 'disconnected';
      this.emit({ type: 'source-state', state: 'disconnected', detail: s.error.message });
    }
  }
}

/** Create the SPIFFE Workload API source (see WorkloadApiSourceOptions). */
export function createWorkloadApiSource(opts: WorkloadApiSourceOptions = {}): WorkloadApiSource {
  return new WorkloadApiSource(opts);
}
