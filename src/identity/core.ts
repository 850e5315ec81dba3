import type { Logger } from 'pino';
import type { Svid, TrustBundles } from '../spiffe/index.js';
import type { StreamState, X509BundlesUpdate } from '../spiffe/workload/index.js';
import { systemClock, type Clock, type Timer } from '../time.js';
import type { IdentityEvent, IdentitySource, IdentitySourceKind } from './source.js';

/** Reason of the svid-removed event for an identity that is no longer wanted on this node. */
export const REASON_NOT_WANTED = 'workload no longer on this node';
/** Reason of the svid-removed event for an SVID that reached its notAfter while held. */
export const REASON_EXPIRED = 'expired';

/** Default of how long ready() waits for the first complete state. */
export const DEFAULT_READY_TIMEOUT_MS = 30_000;

/**
 * A source's answer to "is the first complete state there?": 'ready', 'pending' (keep waiting), or
 * an Error that ready() rejects with at once.
 */
export type Readiness = 'ready' | 'pending' | Error;

/** Extra stable-named log fields for an event's log line (e.g. `file`). */
export type LogContext = Readonly<Record<string, unknown>>;

export interface IdentitySourceCoreOptions {
  kind: IdentitySourceKind;
  logger?: Logger | undefined;
  clock?: Clock | undefined;
  /** How long ready() waits while the source is 'pending' (default 30 s). */
  readyTimeoutMs?: number | undefined;
  /** The source's readiness, asked on ready() and on every wake(). */
  readiness: () => Readiness;
  /** The error ready() rejects with after `readyTimeoutMs` of 'pending' (undefined: one naming the kind). */
  timeoutError?: ((timeoutMs: number) => Error | undefined) | undefined;
  /** The error ready() rejects with once the source is closed. */
  closedError: () => Error;
  /**
   * Called after a held SVID reached its notAfter and was removed (its svid-removed event is out),
   * so the source can record why the identity is gone.
   */
  onExpired?: ((spiffeId: string, svid: Svid) => void) | undefined;
}

interface Held {
  svid: Svid;
  expiry: Timer | undefined;
}

/**
 * What every identity source shares: the wanted SPIFFE IDs, the held SVIDs and their expiry, the
 * trust bundles, the event stream with one log line per event, and the ready latch with its
 * timeout. A source only fetches: it tells the core what it got (put, replaceAll, remove,
 * setBundles, state) and calls wake() when its readiness may have changed.
 *
 * Log lines (component set by the caller's logger): `svid_updated` (local_id, serial, not_after,
 * rotated), `svid_removed` (local_id, reason), `bundles_updated` (trust_domains),
 * `identity_source_state` (state, detail).
 */
export class IdentitySourceCore {
  readonly kind: IdentitySourceKind;
  readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly readyTimeoutMs: number;
  private readonly opts: IdentitySourceCoreOptions;
  private held = new Map<string, Held>();
  private readonly listeners = new Set<(e: IdentityEvent) => void>();
  private readonly waiters = new Set<() => void>();
  private wantedIds = new Set<string>();
  private currentBundles: TrustBundles = new Map();
  private upstreamState: 'connected' | 'disconnected' | 'denied' | undefined;
  private lastStreamError: string | undefined;
  private isClosed = false;

  constructor(opts: IdentitySourceCoreOptions) {
    this.opts = opts;
    this.kind = opts.kind;
    this.logger = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.readyTimeoutMs = opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** The SPIFFE IDs wanted on this node. */
  get wanted(): ReadonlySet<string> {
    return this.wantedIds;
  }

  /**
   * Sets the wanted SPIFFE IDs. Unless `keepUnwanted`, an SVID held for an ID no longer wanted is
   * removed (svid-removed, reason REASON_NOT_WANTED). Returns the IDs that joined and left.
   */
  setWanted(
    spiffeIds: readonly string[],
    opts: { keepUnwanted?: boolean } = {},
  ): { added: string[]; removed: string[] } {
    const next = new Set(spiffeIds);
    const removed = [...this.wantedIds].filter((id) => !next.has(id));
    const added = [...next].filter((id) => !this.wantedIds.has(id));
    this.wantedIds = next;
    if (!opts.keepUnwanted) for (const id of removed) this.remove(id, REASON_NOT_WANTED);
    return { added, removed };
  }

  /** The SVID held for `spiffeId`, expired or not (the source's bookkeeping). */
  get(spiffeId: string): Svid | undefined {
    return this.held.get(spiffeId)?.svid;
  }

  /** The SVID held for `spiffeId` if it has not reached its notAfter. */
  svid(spiffeId: string): Svid | undefined {
    const s = this.held.get(spiffeId)?.svid;
    return s && s.notAfter.getTime() > this.clock.now() ? s : undefined;
  }

  /** SPIFFE IDs of the held SVIDs, in the order they were first put. */
  ids(): string[] {
    return [...this.held.keys()];
  }

  /**
   * Holds `svid` for its SPIFFE ID: emits svid-updated (with previousNotAfter when it replaces
   * one) and arms its expiry. Putting the SVID already held does nothing.
   */
  put(svid: Svid, context: LogContext = {}): void {
    if (this.isClosed) return;
    const id = svid.spiffeId;
    const previous = this.held.get(id);
    if (previous?.svid === svid) return;
    previous?.expiry?.cancel();
    const entry: Held = { svid, expiry: undefined };
    this.held.set(id, entry);
    this.arm(id, entry);
    const rotated = previous !== undefined;
    this.logger?.info(
      {
        event: 'svid_updated',
        local_id: id,
        serial: svid.leaf.serialNumber,
        not_after: svid.notAfter.toISOString(),
        rotated,
        ...context,
      },
      rotated ? 'SVID renewed' : 'SVID issued',
    );
    this.emit({
      type: 'svid-updated',
      spiffeId: id,
      svid,
      ...(previous ? { previousNotAfter: previous.svid.notAfter } : {}),
    });
  }

  /** Stops holding the SVID of `spiffeId`; emits svid-removed when one was held. */
  remove(spiffeId: string, reason: string): boolean {
    const entry = this.held.get(spiffeId);
    if (!entry) return false;
    entry.expiry?.cancel();
    this.held.delete(spiffeId);
    this.logger?.warn({ event: 'svid_removed', local_id: spiffeId, reason }, 'SVID no longer available');
    this.emit({ type: 'svid-removed', spiffeId, reason });
    return true;
  }

  /**
   * Makes the held set equal to `next` (keyed by SPIFFE ID, in its order): removes what it lacks
   * (with `reason`), then puts what changed and what is new, in that order.
   */
  replaceAll(next: ReadonlyMap<string, Svid>, reason: string): void {
    for (const [id, entry] of [...this.held]) {
      const now = next.get(id);
      if (!now) this.remove(id, reason);
      else if (now !== entry.svid) this.put(now);
    }
    for (const [id, svid] of next) if (!this.held.has(id)) this.put(svid);
    const ordered = new Map<string, Held>();
    for (const id of next.keys()) {
      const entry = this.held.get(id);
      if (entry) ordered.set(id, entry);
    }
    this.held = ordered;
  }

  bundles(): TrustBundles {
    return this.currentBundles;
  }

  /** Installs new trust bundles (complete state) and emits bundles-updated. */
  setBundles(bundles: TrustBundles, context: LogContext = {}): void {
    if (this.isClosed) return;
    this.currentBundles = bundles;
    this.logger?.info(
      { event: 'bundles_updated', trust_domains: [...bundles.keys()], ...context },
      'trust bundles updated',
    );
    this.emit({ type: 'bundles-updated', bundles });
  }

  /**
   * Installs the trust bundles of a Workload API or Delegated Identity API update (`from` names
   * the sender in logs): each rejected entry is logged; an update without any usable bundle keeps
   * the previous ones. Returns whether the bundles were installed.
   */
  acceptBundleUpdate(u: X509BundlesUpdate, from: string): boolean {
    if (this.isClosed) return false;
    for (const r of u.rejected) {
      this.logger?.warn(
        { event: 'bundle_rejected', reason: r.reason, trust_domain: r.subject, err: r.message },
        'trust bundle entry rejected',
      );
    }
    if (u.bundles.size === 0) {
      this.logger?.error(
        { event: 'bundle_rejected', reason: 'empty-bundle-set' },
        `${from} sent no usable trust bundle; keeping the previous one`,
      );
      return false;
    }
    this.setBundles(u.bundles);
    return true;
  }

  /**
   * Reports the state of the connection to the upstream (SPIRE agent, bundle file); only a change
   * is an event. 'denied' (the upstream refuses this process) is reported as no-identity.
   */
  upstream(state: 'connected' | 'disconnected' | 'denied', detail: string, context: LogContext = {}): void {
    if (this.isClosed || this.upstreamState === state) return;
    this.upstreamState = state;
    this.state(state === 'denied' ? 'no-identity' : state, detail, context);
  }

  /**
   * Follows the state of one Workload API / Delegated Identity API stream: 'connected' and
   * 'unavailable' become upstream() reports named `upstream` ("SPIRE agent at unix:///..."), and the
   * error is kept for lastError. Returns false for the states the source decides on itself,
   * 'permission-denied' and 'failed' (the stream gave up); true when nothing is left to do.
   */
  followStream(stream: string, s: StreamState, upstream: string): boolean {
    if (this.isClosed) return true;
    if (s.state === 'connected') {
      this.upstream('connected', upstream, { stream });
      return true;
    }
    this.lastStreamError = s.error.message;
    if (s.state !== 'unavailable') return false;
    this.upstream('disconnected', s.error.message, { stream });
    return true;
  }

  /** The last error a followed stream reported, for "not ready" messages. */
  get lastError(): string | undefined {
    return this.lastStreamError;
  }

  /** Reports the source's upstream state (emits source-state). */
  state(state: 'connected' | 'disconnected' | 'no-identity', detail: string, context: LogContext = {}): void {
    if (this.isClosed) return;
    const fields = { event: 'identity_source_state', state, detail, ...context };
    if (state === 'connected') this.logger?.info(fields, 'identity source state');
    else this.logger?.warn(fields, 'identity source state');
    this.emit({ type: 'source-state', state, detail });
  }

  subscribe(listener: (event: IdentityEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves once the source's readiness is 'ready'; rejects with its Error, with the timeout
   * error after `readyTimeoutMs` of 'pending', or with the closed error.
   */
  ready(): Promise<void> {
    const first = this.check();
    if (first === 'ready') return Promise.resolve();
    if (first !== 'pending') return Promise.reject(first);
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        timer.cancel();
        this.waiters.delete(waiter);
      };
      const waiter = (): void => {
        const r = this.check();
        if (r === 'pending') return;
        done();
        if (r === 'ready') resolve();
        else reject(r);
      };
      const timer = this.clock.setTimeout(() => {
        done();
        reject(
          this.opts.timeoutError?.(this.readyTimeoutMs) ??
            new Error(
              `${this.kind} identity source ready: no complete state within ${this.readyTimeoutMs} ms`,
            ),
        );
      }, this.readyTimeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Re-evaluates pending ready() calls; call it when the source's readiness may have changed. */
  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Drops every SVID without events, cancels timers, fails pending ready() calls. Idempotent. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const entry of this.held.values()) entry.expiry?.cancel();
    this.held.clear();
    this.wake();
    this.listeners.clear();
  }

  private check(): Readiness {
    return this.isClosed ? this.opts.closedError() : this.opts.readiness();
  }

  private emit(e: IdentityEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.logger?.error({ event: 'identity_listener_failed', err }, 'identity event listener threw');
      }
    }
  }

  /** Removes the SVID when it reaches notAfter; timers are capped, so a long lifetime re-arms. */
  private arm(id: string, entry: Held): void {
    entry.expiry = this.clock.setTimeout(
      () => {
        entry.expiry = undefined;
        if (this.held.get(id) !== entry) return;
        if (entry.svid.notAfter.getTime() > this.clock.now()) {
          this.arm(id, entry);
          return;
        }
        this.remove(id, REASON_EXPIRED);
        this.opts.onExpired?.(id, entry.svid);
      },
      entry.svid.notAfter.getTime() - this.clock.now() + 1,
    );
  }
}

/** What a source gives its base: the core options it decides (the rest comes from its methods). */
export type IdentitySourceBaseOptions = Pick<
  IdentitySourceCoreOptions,
  'logger' | 'clock' | 'readyTimeoutMs' | 'closedError'
>;

/**
 * Base of the identity sources: creates the core, with readiness, the ready timeout error and the
 * expiry hook taken from the subclass, and answers the IdentitySource queries from it. A subclass
 * fetches and implements setWanted(), close() and readiness().
 */
export abstract class IdentitySourceBase implements IdentitySource {
  abstract readonly kind: IdentitySourceKind;
  protected readonly core: IdentitySourceCore;

  constructor(kind: IdentitySourceKind, opts: IdentitySourceBaseOptions) {
    this.core = new IdentitySourceCore({
      ...opts,
      kind,
      readiness: () => this.readiness(),
      timeoutError: (ms) => this.timeoutError(ms),
      onExpired: (id, svid) => this.onExpired(id, svid),
    });
  }

  abstract setWanted(spiffeIds: readonly string[]): void;
  abstract close(): Promise<void>;
  /** See IdentitySourceCoreOptions.readiness. */
  protected abstract readiness(): Readiness;

  /** The error ready() rejects with after the ready timeout (undefined: the core's, naming the kind). */
  protected timeoutError(_ms: number): Error | undefined {
    return undefined;
  }

  /** Called after a held SVID expired and was removed. */
  protected onExpired(_spiffeId: string, _svid: Svid): void {}

  svid(spiffeId: string): Svid | undefined {
    return this.core.svid(spiffeId);
  }

  bundles(): TrustBundles {
    return this.core.bundles();
  }

  subscribe(listener: (event: IdentityEvent) => void): () => void {
    return this.core.subscribe(listener);
  }

  ready(): Promise<void> {
    return this.core.ready();
  }

  protected get closed(): boolean {
    return this.core.closed;
  }
}
