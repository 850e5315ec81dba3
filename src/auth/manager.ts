import type { Logger } from 'pino';
import type { AuditSink } from '../audit/sink.js';
import type { AuthKey, AuthSignal, SignalSource } from '../datapath/types.js';
import { backoffMs } from '../sync.js';
import type { AuthCache, CachedEntry } from './cache.js';
import { pairKey } from './pair.js';

/** Resolves node-local numeric handles to names and back (identity + node allocators, inventory). */
export interface PairResolver {
  spiffeIdOf(numericId: number): string | undefined;
  /** Allocates when needed (the server side learns remote identities from handshakes). */
  numericIdFor(spiffeId: string): number;
  nodeNameOf(nodeId: number): string | undefined;
  nodeIdOf(nodeName: string): number | undefined;
  /** Where the peer node's daemon listens. */
  nodeEndpoint(nodeName: string): { address: string; port: number } | undefined;
  /** Whether policy still asks for this pair (used by re-authentication and GC). */
  pairRequired(localSpiffeId: string, remoteSpiffeId: string, remoteNode: string): boolean;
}

export interface AuthenticateRequest {
  peerNode: string;
  peerAddress: string;
  peerPort: number;
  localId: string;
  remoteId: string;
  signal?: AbortSignal;
}

export interface AuthenticateResult {
  expiresAtMs: number;
  durationMs: number;
  localSerial?: string;
  peerSerials?: string[];
  peerNotAfterMs?: number;
  tlsVersion?: string;
  cipher?: string;
}

/** The client half of the handshake, as the manager uses it. */
export interface Authenticator {
  authenticate(req: AuthenticateRequest): Promise<AuthenticateResult>;
}

/** What the server half reports after it verified a client (the manager writes the reverse entry). */
export interface ServerAuthenticated {
  /** Our workload (the identity the client asked for). */
  localId: string;
  /** The client's workload. */
  remoteId: string;
  peerNode: string;
  expiresAtMs: number;
  durationMs?: number;
  peerSerials?: string[];
  localSerial?: string;
  tlsVersion?: string;
  cipher?: string;
}

/** Optional hooks for metrics. */
export interface AuthObserver {
  signal?(
    outcome: 'queued' | 'pending' | 'live' | 'backoff' | 'queue-full' | 'unresolved' | 'unresolved-address',
  ): void;
  handshake?(result: 'success' | 'failure', reason: string, durationMs: number): void;
  entries?(count: number): void;
}

export interface AuthManagerOptions {
  maxConcurrent: number;
  queueSize: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Re-authenticate when this fraction of an entry's lifetime has passed (0 < f < 1). */
  reauthAt: number;
  /** Keep retrying a failed pair while signals for it arrived within this window. */
  retryWindowMs?: number;
}

export type WorkReason = 'signal' | 'reauth-expiry' | 'reauth-rotation' | 'retry' | 'preauth';

interface PairState {
  attempts: number;
  nextAttemptAtMs: number;
  lastSignalAtMs: number;
  retryTimer?: NodeJS.Timeout;
}

interface WorkItem {
  key: AuthKey;
  reason: WorkReason;
}

/**
 * Turns auth-required signals into handshakes and handshakes into auth map entries.
 * Pending pairs are de-duplicated; the queue and the number of concurrent handshakes are
 * bounded; failures back off exponentially per pair and never write an entry (fail closed).
 */
export class AuthManager {
  private readonly queue: WorkItem[] = [];
  private readonly pending = new Set<string>();
  private readonly inFlight = new Map<string, AbortController>();
  private readonly pairs = new Map<string, PairState>();
  private readonly now: () => number;
  private closed = false;
  private runner: Promise<void> | undefined;
  private source: SignalSource | undefined;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly deps: {
      cache: AuthCache;
      resolver: PairResolver;
      authenticator: Authenticator;
      audit: AuditSink;
      logger: Logger;
      options: AuthManagerOptions;
      observer?: AuthObserver;
      now?: () => number;
    },
  ) {
    this.now = deps.now ?? Date.now;
  }

  /** Reads signals until close(), which also closes the source. */
  start(signals: SignalSource): void {
    this.source = signals;
    this.runner = signals
      .run((s) => this.handleSignal(s))
      .catch((err: unknown) => {
        if (!this.closed)
          this.deps.logger.error({ event: 'signal_reader_failed', err }, 'signal reader stopped');
      });
  }

  handleSignal(signal: AuthSignal): void {
    if (this.closed) return;
    // A pod address the inventory does not know yet: nothing to authenticate until it does.
    if (signal.unresolved) return this.observe('unresolved-address');
    const key: AuthKey = {
      localId: signal.localId,
      remoteId: signal.remoteId,
      remoteNode: signal.remoteNode,
      authType: signal.authType,
    };
    const id = pairKey(key);
    const now = this.now();
    const state = this.pairs.get(id);
    if (state) state.lastSignalAtMs = now;

    if (this.pending.has(id)) return this.observe('pending');
    if (this.deps.cache.isLive(key)) {
      // The packet raced the entry write; the next retransmission passes.
      return this.observe('live');
    }
    if (state && state.nextAttemptAtMs > now) return this.observe('backoff');
    this.deps.audit.record({
      type: 'signal',
      outcome: 'info',
      ...this.names(key),
      direction: signal.direction,
      // Which policy mode applied to the packet: dropped (enforce) or passed (permissive).
      details: { mode: signal.permissive ? 'permissive' : 'enforce' },
    });
    this.enqueue({ key, reason: 'signal' });
  }

  /** The server half verified a client: write the reverse entry. Throws when it cannot be written. */
  onServerAuthenticated(r: ServerAuthenticated): AuthKey {
    const nodeId = this.deps.resolver.nodeIdOf(r.peerNode);
    if (nodeId === undefined) throw new Error(`auth: write entry: unknown node ${r.peerNode}`);
    const key: AuthKey = {
      localId: this.deps.resolver.numericIdFor(r.localId),
      remoteId: this.deps.resolver.numericIdFor(r.remoteId),
      remoteNode: nodeId,
      authType: 1,
    };
    this.deps.cache.set(key, { expiresAtMs: r.expiresAtMs }, 'server');
    this.clearFailures(pairKey(key));
    this.deps.audit.record({
      type: 'handshake-succeeded',
      outcome: 'success',
      localId: r.localId,
      remoteId: r.remoteId,
      node: r.peerNode,
      direction: 'server',
      details: {
        expiresAtMs: r.expiresAtMs,
        durationMs: r.durationMs,
        peerSerials: r.peerSerials,
        localSerial: r.localSerial,
        tlsVersion: r.tlsVersion,
        cipher: r.cipher,
      },
    });
    this.deps.audit.record({
      type: 'entry-written',
      outcome: 'success',
      localId: r.localId,
      remoteId: r.remoteId,
      node: r.peerNode,
      direction: 'server',
      details: { expiresAtMs: r.expiresAtMs },
    });
    this.deps.observer?.entries?.(this.deps.cache.size);
    return key;
  }

  /** Our SVID for spiffeId was renewed: re-authenticate every pair it is part of, before expiry. */
  onLocalSvidRotated(spiffeId: string): number {
    let n = 0;
    for (const e of this.deps.cache.entries()) {
      if (this.deps.resolver.spiffeIdOf(e.key.localId) === spiffeId) {
        this.enqueue({ key: e.key, reason: 'reauth-rotation' });
        n++;
      }
    }
    return n;
  }

  /** Re-authenticate entries that passed `reauthAt` of their lifetime and are still required. */
  scheduleExpiryReauth(): number {
    const now = this.now();
    let n = 0;
    for (const e of this.deps.cache.entries()) {
      if (e.origin === 'server') continue; // the peer that initiated refreshes it (and so our side)
      if (e.expiresAtMs <= now) continue; // GC's business; a new signal re-authenticates
      const due = e.writtenAtMs + this.deps.options.reauthAt * (e.expiresAtMs - e.writtenAtMs);
      if (now < due) continue;
      const names = this.names(e.key);
      if (!names.localId || !names.remoteId || !names.node) continue;
      if (!this.deps.resolver.pairRequired(names.localId, names.remoteId, names.node)) continue;
      this.enqueue({ key: e.key, reason: 'reauth-expiry' });
      n++;
    }
    return n;
  }

  /**
   * Authenticate pairs before their first packet (pairs the policy implies). Live, pending and
   * backed-off pairs are skipped; returns how many were queued.
   */
  preauthenticate(keys: readonly AuthKey[]): number {
    const now = this.now();
    let n = 0;
    for (const key of keys) {
      if (this.closed) break;
      if (this.deps.cache.isLive(key)) continue;
      const id = pairKey(key);
      if (this.pending.has(id)) continue;
      const st = this.pairs.get(id);
      if (st && st.nextAttemptAtMs > now) continue;
      const before = this.queue.length;
      this.enqueue({ key, reason: 'preauth' });
      if (this.queue.length > before || this.pending.has(id)) n++;
    }
    return n;
  }

  /** Queue depth, in-flight handshakes and pairs in backoff. */
  stats(): { queued: number; inFlight: number; backoff: number } {
    const now = this.now();
    let backoff = 0;
    for (const s of this.pairs.values()) if (s.nextAttemptAtMs > now) backoff++;
    return { queued: this.queue.length, inFlight: this.inFlight.size, backoff };
  }

  /** Resolves when nothing is queued or in flight (tests, graceful shutdown). */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.pending.clear();
    for (const c of this.inFlight.values()) c.abort(new Error('auth manager closed'));
    for (const s of this.pairs.values()) if (s.retryTimer) clearTimeout(s.retryTimer);
    this.source?.close();
    await this.runner;
    this.notifyIdle();
  }

  private enqueue(item: WorkItem): void {
    const id = pairKey(item.key);
    if (this.pending.has(id)) return this.observe('pending');
    if (this.queue.length >= this.deps.options.queueSize) {
      this.deps.logger.warn(
        { event: 'auth_queue_full', pair: id, queue: this.queue.length },
        'auth queue full: dropping request (the next signal retries)',
      );
      return this.observe('queue-full');
    }
    this.pending.add(id);
    this.queue.push(item);
    this.observe('queued');
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.inFlight.size < this.deps.options.maxConcurrent && this.queue.length > 0) {
      const item = this.queue.shift()!;
      const id = pairKey(item.key);
      const ctrl = new AbortController();
      this.inFlight.set(id, ctrl);
      void this.work(item, ctrl.signal).finally(() => {
        this.inFlight.delete(id);
        this.pending.delete(id);
        this.pump();
        this.notifyIdle();
      });
    }
  }

  private notifyIdle(): void {
    if (this.queue.length !== 0 || this.inFlight.size !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async work(item: WorkItem, signal: AbortSignal): Promise<void> {
    const { key } = item;
    const names = this.names(key);
    const log = this.deps.logger.child({
      local_id: names.localId,
      remote_id: names.remoteId,
      node: names.node,
    });
    if (!names.localId || !names.remoteId || !names.node) {
      log.warn(
        { event: 'auth_unresolved', pair: pairKey(key) },
        'auth: cannot resolve the pair to SPIFFE IDs and a node; not authenticating',
      );
      this.observe('unresolved');
      return;
    }
    const endpoint = this.deps.resolver.nodeEndpoint(names.node);
    if (!endpoint) {
      this.fail(key, names, item.reason, 'unknown-node', `no address for node ${names.node}`, 0);
      return;
    }
    if (item.reason !== 'signal') {
      this.deps.audit.record({ type: 'reauth', outcome: 'info', ...names, details: { why: item.reason } });
    }
    const started = this.now();
    try {
      const r = await this.deps.authenticator.authenticate({
        peerNode: names.node,
        peerAddress: endpoint.address,
        peerPort: endpoint.port,
        localId: names.localId,
        remoteId: names.remoteId,
        signal,
      });
      if (this.closed) return;
      if (!(r.expiresAtMs > this.now())) {
        this.fail(
          key,
          names,
          item.reason,
          'entry-already-expired',
          'handshake produced an expired entry',
          r.durationMs,
        );
        return;
      }
      let entry: CachedEntry;
      try {
        entry = this.deps.cache.set(key, { expiresAtMs: r.expiresAtMs }, 'client');
      } catch (err) {
        this.fail(key, names, item.reason, 'entry-write-failed', (err as Error).message, r.durationMs);
        return;
      }
      this.clearFailures(pairKey(key));
      this.deps.audit.record({
        type: 'handshake-succeeded',
        outcome: 'success',
        ...names,
        direction: 'client',
        details: {
          why: item.reason,
          expiresAtMs: r.expiresAtMs,
          durationMs: r.durationMs,
          localSerial: r.localSerial,
          peerSerials: r.peerSerials,
          peerNotAfterMs: r.peerNotAfterMs,
          tlsVersion: r.tlsVersion,
          cipher: r.cipher,
        },
      });
      this.deps.audit.record({
        type: 'entry-written',
        outcome: 'success',
        ...names,
        direction: 'client',
        details: { expiresAtMs: entry.expiresAtMs },
      });
      this.deps.observer?.handshake?.('success', 'ok', r.durationMs);
      this.deps.observer?.entries?.(this.deps.cache.size);
      log.info(
        {
          event: 'auth_succeeded',
          why: item.reason,
          duration_ms: r.durationMs,
          expires_at: new Date(r.expiresAtMs).toISOString(),
        },
        'pair authenticated; entry written',
      );
    } catch (err) {
      if (this.closed) return;
      const e = err as { reason?: unknown; message?: unknown };
      const reason = typeof e.reason === 'string' ? e.reason : 'internal-error';
      const message = typeof e.message === 'string' ? e.message : String(err);
      this.fail(key, names, item.reason, reason, message, this.now() - started);
    }
  }

  private fail(
    key: AuthKey,
    names: { localId?: string; remoteId?: string; node?: string },
    why: WorkReason,
    reason: string,
    message: string,
    durationMs: number,
  ): void {
    const id = pairKey(key);
    const now = this.now();
    const state = this.pairs.get(id) ?? { attempts: 0, nextAttemptAtMs: 0, lastSignalAtMs: now };
    const delay = backoffMs(state.attempts, this.deps.options.retryBaseMs, this.deps.options.retryMaxMs);
    state.attempts++;
    state.nextAttemptAtMs = now + delay;
    if (why === 'signal') state.lastSignalAtMs = Math.max(state.lastSignalAtMs, now);
    this.pairs.set(id, state);
    const unreachable = reason === 'peer-unreachable' || reason === 'timeout';
    this.deps.audit.record({
      type: unreachable ? 'peer-unreachable' : 'handshake-failed',
      outcome: 'failure',
      reason,
      ...names,
      direction: 'client',
      details: { why, message, durationMs, attempt: state.attempts, retryInMs: delay },
    });
    this.deps.observer?.handshake?.('failure', reason, durationMs);
    this.deps.logger.warn(
      {
        event: 'auth_failed',
        local_id: names.localId,
        remote_id: names.remoteId,
        node: names.node,
        reason,
        err: message,
        attempt: state.attempts,
        retry_in_ms: delay,
      },
      `auth failed (${reason}): no entry written`,
    );
    // Retry on our own while the pair is still being asked for; otherwise the next signal retries.
    if (state.retryTimer) clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(() => {
      state.retryTimer = undefined;
      const window = this.deps.options.retryWindowMs ?? 30_000;
      const stillWanted = why !== 'signal' || this.now() - state.lastSignalAtMs <= window;
      if (!this.closed && stillWanted && !this.deps.cache.isLive(key)) this.enqueue({ key, reason: 'retry' });
    }, delay);
    state.retryTimer.unref();
  }

  private clearFailures(id: string): void {
    const s = this.pairs.get(id);
    if (s?.retryTimer) clearTimeout(s.retryTimer);
    this.pairs.delete(id);
  }

  private names(key: AuthKey): { localId?: string; remoteId?: string; node?: string } {
    return {
      localId: this.deps.resolver.spiffeIdOf(key.localId),
      remoteId: this.deps.resolver.spiffeIdOf(key.remoteId),
      node: this.deps.resolver.nodeNameOf(key.remoteNode),
    };
  }

  private observe(o: Parameters<NonNullable<AuthObserver['signal']>>[0]): void {
    this.deps.observer?.signal?.(o);
  }
}
