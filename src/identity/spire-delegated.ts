import type { Logger } from 'pino';
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
import type { Clock } from '../time.js';
import { IdentitySourceBase, type Readiness } from './core.js';
import { SpireDelegatedError } from './errors.js';

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
  clock?: Clock | undefined;
}

type WorkloadState = 'pending' | 'held' | 'no-identity';

interface Wanted {
  spiffeId: string;
  selectorKey: string;
  selectors: Selector[];
  watch: StreamWatch | undefined;
  state: WorkloadState;
  /** Last SVID received but not yet verified (bundles not known yet). */
  unverified: ReceivedX509Svid | undefined;
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
export class SpireDelegatedSource extends IdentitySourceBase {
  readonly kind = 'spire-delegated' as const;
  private readonly client: DelegatedIdentityClient;
  private readonly workloads: (spiffeId: string) => readonly string[] | undefined;
  private readonly logger: Logger | undefined;
  private readonly wanted = new Map<string, Wanted>();
  private readonly bundleWatch: StreamWatch;
  private haveBundles = false;

  constructor(opts: SpireDelegatedSourceOptions) {
    super('spire-delegated', {
      logger: opts.logger,
      clock: opts.clock,
      readyTimeoutMs: opts.readyTimeoutMs,
      closedError: () => new SpireDelegatedError('SPIRE delegated source ready: closed'),
    });
    this.workloads = opts.workloads;
    this.logger = opts.logger;
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
    const { removed } = this.core.setWanted(spiffeIds);
    for (const id of removed) {
      const w = this.wanted.get(id);
      if (!w) continue;
      this.unsubscribe(w);
      this.wanted.delete(id);
      w.unverified = undefined;
    }
    for (const id of this.core.wanted) {
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
        unverified: undefined,
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
    this.core.wake();
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.core.close();
    this.bundleWatch.close();
    for (const w of this.wanted.values()) {
      this.unsubscribe(w);
      w.unverified = undefined;
    }
    this.wanted.clear();
    this.client.close();
  }

  protected override onExpired(spiffeId: string): void {
    const w = this.wanted.get(spiffeId);
    if (!w) return;
    w.unverified = undefined;
    w.state = 'pending';
  }

  protected readiness(): Readiness {
    if (!this.haveBundles) return 'pending';
    for (const w of this.wanted.values()) if (w.state === 'pending') return 'pending';
    return 'ready';
  }

  protected override timeoutError(ms: number): Error {
    const pending = [...this.wanted.values()].filter((w) => w.state === 'pending').map((w) => w.spiffeId);
    const parts = [
      ...(this.haveBundles ? [] : ['no trust bundle received']),
      ...(pending.length > 0 ? [`no answer for ${pending.join(', ')}`] : []),
    ];
    return new SpireDelegatedError(
      `SPIRE delegated source ready: ${parts.join('; ')} within ${ms} ms from ${this.client.endpoint.uri}` +
        (this.core.lastError ? ` (last error: ${this.core.lastError})` : ''),
    );
  }

  private unsubscribe(w: Wanted): void {
    w.watch?.close();
    w.watch = undefined;
  }

  private drop(w: Wanted, reason: string): void {
    w.unverified = undefined;
    this.core.remove(w.spiffeId, reason);
  }

  private noIdentity(w: Wanted, detail: string): void {
    const changed = w.state !== 'no-identity' || w.noIdentityDetail !== detail;
    w.state = 'no-identity';
    w.noIdentityDetail = detail;
    this.drop(w, 'no-registration-entry');
    if (changed) this.core.state('no-identity', detail, { local_id: w.spiffeId });
    this.core.wake();
  }

  private onStreamState(stream: string, s: StreamState): void {
    if (this.core.followStream(stream, s, `SPIRE agent at ${this.client.endpoint.uri}`)) return;
    if (s.state === 'permission-denied') {
      // Not (or no longer) an authorized delegate. Held SVIDs keep serving until they expire.
      this.core.upstream(
        'denied',
        `SPIRE agent refused the Delegated Identity API (is meshauthd's SPIFFE ID in authorized_delegates?): ${s.error.message}`,
        { stream, reason: 'permission-denied' },
      );
    } else if (s.state === 'failed') {
      this.core.state('disconnected', s.error.message, { stream });
    }
  }

  private onBundles(u: X509BundlesUpdate): void {
    if (!this.core.acceptBundleUpdate(u, 'SPIRE agent')) return;
    this.haveBundles = true;
    for (const w of this.wanted.values()) {
      if (w.unverified) this.accept(w, w.unverified);
    }
    this.core.wake();
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
      if (rejected && this.core.get(w.spiffeId)) {
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
    const held = this.core.get(w.spiffeId);
    if (
      held &&
      held.leaf.serialNumber === r.svid.leaf.serialNumber &&
      held.chainDer[0]!.equals(r.svid.chainDer[0]!)
    ) {
      w.state = 'held';
      return;
    }
    try {
      verifyX509Svid(r.svid.chainDer, this.core.bundles(), { now: new Date(this.core.clock.now()) });
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
    w.state = 'held';
    w.noIdentityDetail = undefined;
    this.core.put(r.svid);
    this.core.wake();
  }
}

/** Create the SPIRE Delegated Identity API source (see SpireDelegatedSourceOptions). */
export function createSpireDelegatedSource(opts: SpireDelegatedSourceOptions): SpireDelegatedSource {
  return new SpireDelegatedSource(opts);
}
