import type { Logger } from 'pino';
import { MeshauthError } from '../errors.js';
import { verifyX509Svid } from '../spiffe/index.js';
import {
  DelegatedIdentityClient,
  parseSelector,
  selectorSetKey,
  type DelegatedX509Update,
  type ReceivedX509Svid,
  type RetryPolicy,
  type Selector,
  type StreamState,
  type StreamWatch,
  type X509BundlesUpdate,
} from '../spiffe/workload/index.js';
import type { IdentityEvent, IdentitySource, Svid, TrustBundles } from './source.js';
import { IdentityEvents } from './events.js';

export class SpireDelegatedError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_SPIRE_DELEGATED', message, options);
  }
}

export interface SpireDelegatedSourceOptions {
  /** The SPIRE agent's admin socket (absolute path or unix:///path). */
  adminSocket: string;
  /**
   * SPIRE selectors ("type:value", e.g. "k8s:ns:demo") of a workload on this node, or undefined
   * when none are known. Called by setWanted() for each wanted SPIFFE ID.
   */
  workloads: (spiffeId: string) => readonly string[] | undefined;
  /** gRPC receive limit in bytes (default 4 MiB). */
  maxMessageBytes?: number | undefined;
  /** Reconnect backoff (default 250 ms doubling to 30 s). */
  retry?: RetryPolicy | undefined;
  /** How long ready() waits for the first complete state (default 30 s). */
  readyTimeoutMs?: number | undefined;
  logger?: Logger | undefined;
}

type WorkloadState = 'pending' | 'held' | 'no-identity';

interface Wanted {
  spiffeId: string;
  selectorKey: string;
  selectors: Selector[];
  watch: StreamWatch | undefined;
  state: WorkloadState;
  svid: Svid | undefined;
  /** Last SVID received but not yet verified (bundles not known yet). */
  unverified: ReceivedX509Svid | undefined;
  expiryTimer: NodeJS.Timeout | undefined;
  /** Last detail reported for a no-identity state (to report changes only). */
  noIdentityDetail: string | undefined;
}

/**
 * IdentitySource over the SPIRE agent's Delegated Identity API: one SubscribeToX509SVIDs stream
 * per workload identity on this node (by the workload's selectors) and one bundle stream. SVIDs
 * are verified against the bundles before they are used; a workload that leaves the node has its
 * subscription closed and its key dropped. While the agent is unreachable the held SVIDs keep
 * serving until they expire.
 */
export class SpireDelegatedSource implements IdentitySource {
  readonly kind = 'spire-delegated' as const;
  private readonly client: DelegatedIdentityClient;
  private readonly workloads: (spiffeId: string) => readonly string[] | undefined;
  private readonly readyTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly wanted = new Map<string, Wanted>();
  private readonly events: IdentityEvents;
  private readonly bundleWatch: StreamWatch;
  private currentBundles: TrustBundles = new Map();
  private haveBundles = false;
  private connection: 'connected' | 'disconnected' | 'denied' | undefined;
  private lastError: string | undefined;
  private readonly waiters = new Set<() => void>();
  private closed = false;

  constructor(opts: SpireDelegatedSourceOptions) {
    this.workloads = opts.workloads;
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
    this.logger = opts.logger;
    this.events = new IdentityEvents(opts.logger);
    this.client = new DelegatedIdentityClient({
      adminSocket: opts.adminSocket,
      maxMessageBytes: opts.maxMessageBytes,
      retry: opts.retry,
      logger: opts.logger,
    });
    this.bundleWatch = this.client.subscribeX509Bundles({
      onUpdate: (u) => this.onBundles(u),
      onState: (s) => this.onStreamState('bundles', s),
    });
  }

  setWanted(spiffeIds: readonly string[]): void {
    if (this.closed) return;
    const next = new Set(spiffeIds);
    for (const [id, w] of this.wanted) {
      if (!next.has(id)) {
        this.unsubscribe(w);
        this.wanted.delete(id);
        this.drop(w, 'workload no longer on this node');
      }
    }
    for (const id of next) {
      const raw = this.workloads(id);
      let selectors: Selector[] = [];
      let problem: string | undefined;
      try {
        selectors = (raw ?? []).map((s) => parseSelector(s));
      } catch (err) {
        problem = (err as Error).message;
      }
      const key = selectorSetKey(selectors);
      const w = this.wanted.get(id);
      if (w && w.selectorKey === key && (w.watch || selectors.length === 0)) continue;
      const entry: Wanted = w ?? {
        spiffeId: id,
        selectorKey: key,
        selectors,
        watch: undefined,
        state: 'pending',
        svid: undefined,
        unverified: undefined,
        expiryTimer: undefined,
        noIdentityDetail: undefined,
      };
      this.unsubscribe(entry);
      entry.selectorKey = key;
      entry.selectors = selectors;
      this.wanted.set(id, entry);
      if (selectors.length === 0) {
        this.noIdentity(entry, problem ?? `no SPIRE selectors are known for ${id} on this node`);
        continue;
      }
      this.logger?.debug(
        { event: 'svid_subscribe', local_id: id, selectors: selectors.map((s) => `${s.type}:${s.value}`) },
        'subscribing to SVIDs',
      );
      entry.watch = this.client.subscribeX509Svids(selectors, {
        onUpdate: (u) => this.onSvids(entry, u),
        onState: (s) => this.onStreamState(id, s),
      });
    }
    this.wake();
  }

  svid(spiffeId: string): Svid | undefined {
    const s = this.wanted.get(spiffeId)?.svid;
    return s && s.notAfter.getTime() > Date.now() ? s : undefined;
  }

  bundles(): TrustBundles {
    return this.currentBundles;
  }

  /** Per-workload state: 'held', 'pending' (no answer yet) or 'no-identity'. */
  state(spiffeId: string): WorkloadState | undefined {
    return this.wanted.get(spiffeId)?.state;
  }

  /** Number of open SVID subscriptions (one per wanted workload with selectors). */
  get subscriptions(): number {
    let n = 0;
    for (const w of this.wanted.values()) if (w.watch) n++;
    return n;
  }

  subscribe(listener: (event: IdentityEvent) => void): () => void {
    return this.events.subscribe(listener);
  }

  /** Resolves once the bundles arrived and every wanted workload has an SVID or a no-identity state. */
  ready(): Promise<void> {
    if (this.closed) return Promise.reject(new SpireDelegatedError('SPIRE delegated source ready: closed'));
    if (this.settled()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (this.closed) {
          done();
          reject(new SpireDelegatedError('SPIRE delegated source ready: closed'));
        } else if (this.settled()) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        const pending = [...this.wanted.values()].filter((w) => w.state === 'pending').map((w) => w.spiffeId);
        const parts = [
          ...(this.haveBundles ? [] : ['no trust bundle received']),
          ...(pending.length > 0 ? [`no answer for ${pending.join(', ')}`] : []),
        ];
        reject(
          new SpireDelegatedError(
            `SPIRE delegated source ready: ${parts.join('; ')} within ${this.readyTimeoutMs} ms from ${this.client.endpoint.uri}` +
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
    this.bundleWatch.close();
    for (const w of this.wanted.values()) {
      this.unsubscribe(w);
      if (w.expiryTimer) clearTimeout(w.expiryTimer);
      w.svid = undefined;
      w.unverified = undefined;
    }
    this.wanted.clear();
    this.client.close();
    this.wake();
    this.events.clear();
  }

  private settled(): boolean {
    if (!this.haveBundles) return false;
    for (const w of this.wanted.values()) if (w.state === 'pending') return false;
    return true;
  }

  private wake(): void {
    for (const f of [...this.waiters]) f();
  }

  private emit(e: IdentityEvent): void {
    this.events.emit(e);
  }

  private unsubscribe(w: Wanted): void {
    w.watch?.close();
    w.watch = undefined;
  }

  private drop(w: Wanted, reason: string): void {
    if (w.expiryTimer) clearTimeout(w.expiryTimer);
    w.expiryTimer = undefined;
    w.unverified = undefined;
    if (w.svid) {
      w.svid = undefined;
      this.logger?.info({ event: 'svid_removed', local_id: w.spiffeId, reason }, 'SVID dropped');
      this.emit({ type: 'svid-removed', spiffeId: w.spiffeId, reason });
    }
  }

  private noIdentity(w: Wanted, detail: string): void {
    const changed = w.state !== 'no-identity' || w.noIdentityDetail !== detail;
    w.state = 'no-identity';
    w.noIdentityDetail = detail;
    this.drop(w, 'no-registration-entry');
    if (changed) {
      this.logger?.warn(
        { event: 'no_identity', local_id: w.spiffeId, reason: detail },
        'no SVID for workload',
      );
      this.emit({ type: 'source-state', state: 'no-identity', detail });
    }
    this.wake();
  }

  private onStreamState(stream: string, s: StreamState): void {
    if (this.closed) return;
    if (s.state === 'connected') {
      if (this.connection !== 'connected') {
        this.connection = 'connected';
        this.logger?.info({ event: 'spire_connected', stream }, 'connected to the SPIRE agent');
        this.emit({
          type: 'source-state',
          state: 'connected',
          detail: `SPIRE agent at ${this.client.endpoint.uri}`,
        });
      }
      return;
    }
    this.lastError = s.error.message;
    if (s.state === 'permission-denied') {
      // Not (or no longer) an authorized delegate. Held SVIDs keep serving until they expire.
      if (this.connection === 'denied') return;
      this.connection = 'denied';
      this.logger?.error(
        { event: 'spire_permission_denied', stream, reason: s.error.message },
        'SPIRE agent refused meshauthd: check authorized_delegates',
      );
      this.emit({
        type: 'source-state',
        state: 'no-identity',
        detail: `SPIRE agent refused the Delegated Identity API (is meshauthd's SPIFFE ID in authorized_delegates?): ${s.error.message}`,
      });
      return;
    }
    if (s.state === 'failed') {
      this.emit({ type: 'source-state', state: 'disconnected', detail: s.error.message });
      return;
    }
    if (this.connection !== 'disconnected') {
      this.connection = 'disconnected';
      this.emit({ type: 'source-state', state: 'disconnected', detail: s.error.message });
    }
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
        'SPIRE agent sent no usable trust bundle; keeping the previous one',
      );
      return;
    }
    this.currentBundles = u.bundles;
    this.haveBundles = true;
    this.logger?.info(
      { event: 'bundles_updated', trust_domains: [...u.bundles.keys()] },
      'trust bundles updated',
    );
    this.emit({ type: 'bundles-updated', bundles: u.bundles });
    for (const w of this.wanted.values()) {
      if (w.unverified) this.accept(w, w.unverified);
    }
    this.wake();
  }

  private onSvids(w: Wanted, u: DelegatedX509Update): void {
    if (this.closed || this.wanted.get(w.spiffeId) !== w) return;
    for (const r of u.rejected) {
      this.logger?.warn(
        { event: 'svid_rejected', local_id: w.spiffeId, reason: r.reason, err: r.message },
        'SVID in SPIRE response rejected',
      );
    }
    const match = u.svids.find((s) => s.spiffeId === w.spiffeId);
    if (!match) {
      const others = u.svids.map((s) => s.spiffeId);
      const sel = w.selectors.map((s) => `${s.type}:${s.value}`).join(', ');
      const rejected = u.rejected.find((r) => r.subject === w.spiffeId);
      if (rejected && w.svid) {
        // A bad renewal: keep the still-valid SVID we hold.
        this.logger?.error(
          { event: 'svid_rejected', local_id: w.spiffeId, reason: rejected.reason },
          'renewed SVID rejected; keeping the previous one',
        );
        return;
      }
      this.noIdentity(
        w,
        rejected
          ? `SVID from SPIRE for ${w.spiffeId} rejected (${rejected.reason}): ${rejected.message}`
          : others.length > 0
            ? `no SPIRE registration entry gives ${w.spiffeId} to selectors [${sel}] (they match ${others.join(', ')})`
            : `no SPIRE registration entry matches selectors [${sel}] for ${w.spiffeId}`,
      );
      return;
    }
    if (!this.haveBundles) {
      w.unverified = match;
      return;
    }
    this.accept(w, match);
  }

  /** Verify against the current bundles and install; a failure keeps the previous SVID. */
  private accept(w: Wanted, r: ReceivedX509Svid): void {
    w.unverified = undefined;
    const held = w.svid;
    if (
      held &&
      held.leaf.serialNumber === r.svid.leaf.serialNumber &&
      held.chainDer[0]!.equals(r.svid.chainDer[0]!)
    ) {
      w.state = 'held';
      return;
    }
    try {
      verifyX509Svid(r.svid.chainDer, this.currentBundles);
    } catch (err) {
      const reason = (err as { reason?: string }).reason ?? 'malformed';
      this.logger?.error(
        { event: 'svid_rejected', local_id: w.spiffeId, reason: `svid-${reason}`, err },
        'SVID from SPIRE failed verification; not used',
      );
      if (!held) {
        // Not trusted; report as no identity rather than leave the workload pending forever.
        this.noIdentity(
          w,
          `SVID from SPIRE for ${w.spiffeId} failed verification: ${(err as Error).message}`,
        );
      }
      return;
    }
    w.svid = r.svid;
    w.state = 'held';
    w.noIdentityDetail = undefined;
    this.scheduleExpiry(w, r.svid);
    this.logger?.info(
      {
        event: held ? 'svid_rotated' : 'svid_received',
        local_id: w.spiffeId,
        serial: r.svid.leaf.serialNumber,
        not_after: r.svid.notAfter.toISOString(),
      },
      held ? 'SVID rotated by SPIRE' : 'SVID received from SPIRE',
    );
    this.emit({
      type: 'svid-updated',
      spiffeId: w.spiffeId,
      svid: r.svid,
      ...(held ? { previousNotAfter: held.notAfter } : {}),
    });
    this.wake();
  }

  private scheduleExpiry(w: Wanted, svid: Svid): void {
    if (w.expiryTimer) clearTimeout(w.expiryTimer);
    // setTimeout caps at ~24.8 days; re-arm for longer lifetimes.
    const ms = Math.min(svid.notAfter.getTime() - Date.now() + 1, 2 ** 31 - 1);
    w.expiryTimer = setTimeout(
      () => {
        w.expiryTimer = undefined;
        if (w.svid !== svid) return;
        if (svid.notAfter.getTime() > Date.now()) {
          this.scheduleExpiry(w, svid);
          return;
        }
        this.drop(w, 'svid-expired');
        w.state = 'pending';
      },
      Math.max(0, ms),
    );
    w.expiryTimer.unref();
  }
}

/** Create the SPIRE Delegated Identity API source (see SpireDelegatedSourceOptions). */
export function createSpireDelegatedSource(opts: SpireDelegatedSourceOptions): SpireDelegatedSource {
  return new SpireDelegatedSource(opts);
}
