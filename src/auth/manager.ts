import { constants } from 'node:os';
import type { Logger } from 'pino';
import type { AuthKey, AuthSignal, SignalSource } from '../datapath/index.js';
import { AuthType } from '../datapath/index.js';
import type { IdentityEvent } from '../identity/index.js';
import type { TrustBundles } from '../spiffe/index.js';
import { backoffMs } from '../sync.js';
import { systemClock, type Clock, type Timer } from '../time.js';
import type { AuditBackpressure } from './audit-pacing.js';
import type { AuthCache, CachedEntry } from './cache.js';
import { pairKey, pairNames, type PairNames } from './pair.js';
import type { AuthenticateRequest } from './handshake/types.js';
import type { AuthReporter, ChannelProvenance, SignalOutcome, WorkReason } from './reporter.js';
import {
  bundleFingerprints,
  removedAuthorities,
  trustDomainOf,
  trustLost,
  type BundleFingerprints,
  type EntryTrust,
} from './trust.js';

export type { AuthenticateRequest };

/** What the kernel answers an update of a full hash map. */
const E2BIG = constants.errno.E2BIG;

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

export interface AuthenticateResult {
  expiresAtMs: number;
  durationMs: number;
  localSerial?: string;
  peerSerials?: string[];
  peerNotAfterMs?: number;
  tlsVersion?: string;
  cipher?: string;
  /** What the decision relied on (trust anchors, chains); entries without it are revoked on any bundle change. */
  trust?: EntryTrust;
  /** The node channel and proofs used instead of a handshake (auth.mode channel). */
  channel?: ChannelProvenance;
  /**
   * Resolves true once the peer confirmed it wrote the reverse entry (channel mode: its pair-result
   * ok). Absent when the authentication itself implies it (per-pair handshake).
   */
  peerEntryWritten?: Promise<boolean>;
}

/** What the manager asks of datapath.synReplay (SynReplay in src/datapath/syn-replay.ts). */
export interface SynReplayHook {
  signalled(key: AuthKey, syn: Buffer): void;
  authenticated(key: AuthKey, peerWritten?: Promise<boolean>): Promise<void>;
  failed(key: AuthKey): void;
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
  trust?: EntryTrust;
  /** The node channel and proofs used instead of a handshake (auth.mode channel). */
  channel?: ChannelProvenance;
}

/**
 * Re-checks, at the moment an entry is written, that the trust the handshake started from still
 * holds: our SVID is still held, our workload is still on this node, the peer workload still on
 * its node. Returns the refusal (a handshake reason code and why) or undefined to write.
 */
export type EntryWriteCheck = (names: {
  localId: string;
  remoteId: string;
  node: string;
}) => { reason: string; message: string } | undefined;

export type { AuditBackpressure } from './audit-pacing.js';

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

interface PairState {
  attempts: number;
  nextAttemptAtMs: number;
  lastSignalAtMs: number;
  /** What the first failed attempt of this run was for: a retry's failure keeps it. */
  origin?: WorkReason;
  retryTimer?: Timer;
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
  private readonly clock: Clock;
  private closed = false;
  private runner: Promise<void> | undefined;
  private source: SignalSource | undefined;
  private idleWaiters: Array<() => void> = [];
  /** Authorities of the trust bundles as last seen (onTrustBundlesChanged / noteTrustBundles). */
  private bundleFps: BundleFingerprints | undefined;
  /** Since when no handshake starts because the audit queue is above its high-water mark. */
  private auditPausedAtMs: number | undefined;
  private auditPauseTimer: Timer | undefined;
  private auditPauses = 0;

  constructor(
    private readonly deps: {
      cache: AuthCache;
      resolver: PairResolver;
      authenticator: Authenticator;
      /** Audit events, log lines and metrics of every outcome. */
      reporter: AuthReporter;
      /** The manager's own operational log (signal reader). */
      logger: Logger;
      options: AuthManagerOptions;
      /** Wall clock (entry expiry, backoff) and the retry timers; default systemClock. */
      clock?: Clock;
      /** Refuses a write whose trust is gone by now (see EntryWriteCheck). */
      writeCheck?: EntryWriteCheck;
      /**
       * The auth map is full: free what can be freed now (a GC pass) before the write is tried once
       * more. Returns how many entries were freed.
       */
      onMapFull?: () => number;
      /** Sends a pair's dropped SYN again once both entries exist (datapath.synReplay). */
      synReplay?: SynReplayHook;
      /** Holds new handshakes back while the audit writer is behind (see AuditBackpressure). */
      auditBackpressure?: AuditBackpressure;
    },
  ) {
    this.clock = deps.clock ?? systemClock;
  }

  private now(): number {
    return this.clock.now();
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
    // SPIFFE mTLS is the only auth type: a record asking for another (corrupt, or from a newer
    // datapath) cannot be answered by the handshake we run, so it earns no handshake and no entry.
    if (signal.authType !== AuthType.SpiffeMtls) return this.observe('unresolved');
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

    // A dropped SYN of an enforced pair waits for the pair's entries (datapath.synReplay).
    const keepSyn = (): void => {
      if (signal.syn && signal.direction === 'egress' && !signal.permissive)
        this.deps.synReplay?.signalled(key, signal.syn);
    };
    if (this.pending.has(id)) {
      keepSyn();
      return this.observe('pending');
    }
    // Asked of the kernel map, not the mirror: an entry removed behind our back must not be
    // answered from memory (the mirror is repaired and the repair counted).
    if (this.deps.cache.checkLive(key)) {
      // The packet raced the entry write; the next retransmission passes.
      return this.observe('live');
    }
    if (state && state.nextAttemptAtMs > now) return this.observe('backoff');
    // The audit event says which policy mode applied: dropped (enforce) or passed (permissive).
    this.deps.reporter.signal(
      this.names(key),
      signal.direction,
      signal.permissive ? 'permissive' : 'enforce',
    );
    keepSyn();
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
    const refused = this.refuseWrite({ localId: r.localId, remoteId: r.remoteId, node: r.peerNode }, r.trust);
    if (refused) {
      throw Object.assign(new Error(`auth: write entry refused: ${refused.message}`), {
        reason: refused.reason,
      });
    }
    this.writeEntry(key, r.expiresAtMs, 'server', r.trust);
    this.clearFailures(pairKey(key));
    this.deps.reporter.serverSucceeded(r, this.deps.cache.size);
    return key;
  }

  /**
   * Follows the identity source: a renewed SVID (an update with a previous one) is audited as a
   * rotation and every pair of that workload re-authenticates with it; a trust-bundle change
   * revokes what relied on a removed authority (onTrustBundlesChanged). Removals are the GC's
   * (AuthGc.onIdentityEvent); other events change nothing here.
   */
  onIdentityEvent(ev: IdentityEvent): void {
    if (ev.type === 'bundles-updated') {
      const r = this.onTrustBundlesChanged(ev.bundles);
      if (r.revoked > 0 || r.reauthenticating > 0) {
        this.deps.logger.warn(
          { event: 'bundle_revocation', revoked: r.revoked, reauthenticating: r.reauthenticating },
          'trust bundles changed: entries that relied on a removed authority revoked',
        );
      }
      return;
    }
    if (ev.type !== 'svid-updated' || !ev.previousNotAfter) return;
    const rotated = {
      spiffeId: ev.spiffeId,
      notAfterMs: ev.svid.notAfter.getTime(),
      previousNotAfterMs: ev.previousNotAfter.getTime(),
      serial: ev.svid.leaf.serialNumber,
    };
    // Audited before the re-authentications it causes are queued.
    this.deps.reporter.svidRotated(rotated, () => this.onLocalSvidRotated(ev.spiffeId));
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
      if (this.deps.cache.isExpired(e, now)) continue; // GC's business; a new signal re-authenticates
      // Measured in the kernel map's clock (CLOCK_BOOTTIME), which does not step with the wall clock.
      const due = e.writtenAtClockMs + this.deps.options.reauthAt * (e.expiresAtClockMs - e.writtenAtClockMs);
      if (this.deps.cache.clockNowMs() < due) continue;
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
      if (this.deps.cache.checkLive(key)) continue;
      const id = pairKey(key);
      if (this.pending.has(id)) continue;
      const st = this.pairs.get(id);
      if (st && st.nextAttemptAtMs > now) continue;
      const before = this.queue.length;
      this.enqueue({ key, reason: 'preauth' });
      if (this.queue.length > before || this.pending.has(id)) n++;
    }
    this.deps.reporter.preauthQueued(keys.length, n);
    return n;
  }

  /** Remembers the current trust bundles without revoking anything (start-up). */
  noteTrustBundles(bundles: TrustBundles): void {
    this.bundleFps = bundleFingerprints(bundles);
  }

  /**
   * The trust bundles changed: every live entry whose decision relied on an authority that is no
   * longer in its bundle is deleted at once (audit `entry-removed`, reason `bundle-revoked`) and,
   * while policy still asks for the pair, re-authenticated under the new bundles. An entry that
   * does not know what it relied on (restored from the pinned map) is treated the same when any
   * authority of its trust domains left. Returns how many were revoked and re-queued.
   */
  onTrustBundlesChanged(bundles: TrustBundles): { revoked: number; reauthenticating: number } {
    const before = this.bundleFps;
    const after = bundleFingerprints(bundles);
    this.bundleFps = after;
    const removed = before ? removedAuthorities(before, after) : undefined;
    let revoked = 0;
    let requeued = 0;
    for (const e of this.deps.cache.entries()) {
      const names = this.names(e.key);
      let why: string | undefined;
      if (e.trust) {
        why = trustLost(e.trust, after);
      } else {
        const tds = [names.localId, names.remoteId].filter((x): x is string => !!x).map(trustDomainOf);
        const gone = tds.find((td) => removed === undefined || removed.has(td) || !after.has(td));
        if (gone !== undefined)
          why = `an authority of "${gone}" left its bundle and the entry does not record what it relied on`;
      }
      if (!why) continue;
      if (this.revoke(e.key, names, why, 'bundle-changed')) revoked++;
      if (
        names.localId &&
        names.remoteId &&
        names.node &&
        this.deps.resolver.pairRequired(names.localId, names.remoteId, names.node)
      ) {
        this.enqueue({ key: e.key, reason: 'reauth-bundle' });
        requeued++;
      }
    }
    return { revoked, reauthenticating: requeued };
  }

  /**
   * Queue depth, in-flight handshakes, pairs in backoff, and pairs whose failures are remembered
   * (tracked: in backoff, or waiting for their retry; a pair nobody signals within the retry window
   * is forgotten at its next retry time).
   */
  stats(): {
    queued: number;
    inFlight: number;
    backoff: number;
    tracked: number;
    /** 1 while no handshake starts because the audit queue is behind (AuditBackpressure), else 0. */
    auditBackpressure: number;
    /** Episodes of audit backpressure since start. */
    auditPauses: number;
  } {
    const now = this.now();
    let backoff = 0;
    for (const s of this.pairs.values()) if (s.nextAttemptAtMs > now) backoff++;
    return {
      queued: this.queue.length,
      inFlight: this.inFlight.size,
      backoff,
      tracked: this.pairs.size,
      auditBackpressure: this.auditPausedAtMs === undefined ? 0 : 1,
      auditPauses: this.auditPauses,
    };
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
    for (const s of this.pairs.values()) if (s.retryTimer) s.retryTimer.cancel();
    this.auditPauseTimer?.cancel();
    this.auditPauseTimer = undefined;
    this.source?.close();
    await this.runner;
    this.notifyIdle();
  }

  private enqueue(item: WorkItem): void {
    const id = pairKey(item.key);
    // Signal outcomes count signals only: retries and re-authentications queue without one.
    const signal = item.reason === 'signal';
    if (this.pending.has(id)) return signal ? this.observe('pending') : undefined;
    if (this.queue.length >= this.deps.options.queueSize) {
      return this.deps.reporter.queueFull(id, this.queue.length, item.reason);
    }
    this.pending.add(id);
    this.queue.push(item);
    if (signal) this.observe('queued');
    this.pump();
  }

  private pump(): void {
    while (
      !this.closed &&
      this.inFlight.size < this.deps.options.maxConcurrent &&
      this.queue.length > 0 &&
      this.auditKeepsUp()
    ) {
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

  /**
   * Whether a new handshake may start as far as the audit trail is concerned. Above the high-water
   * mark: pauses (one log line), re-checks every pollMs; resumes at the low-water mark (one line).
   * In-flight handshakes finish meanwhile, so at most maxConcurrent entries are written past it.
   */
  private auditKeepsUp(): boolean {
    const bp = this.deps.auditBackpressure;
    if (!bp) return true;
    const depth = bp.depth();
    if (this.auditPausedAtMs === undefined) {
      if (depth < bp.highWater) return true;
      this.auditPausedAtMs = this.now();
      this.auditPauses++;
      this.deps.logger.warn(
        {
          event: 'auth_audit_backpressure',
          audit_queue: depth,
          high_water: bp.highWater,
          queued: this.queue.length,
        },
        'audit queue above its high-water mark: no new handshake starts until it drains',
      );
    } else if (depth <= bp.lowWater) {
      this.deps.logger.info(
        {
          event: 'auth_audit_backpressure_end',
          audit_queue: depth,
          low_water: bp.lowWater,
          paused_ms: this.now() - this.auditPausedAtMs,
          queued: this.queue.length,
        },
        'audit queue drained: handshakes start again',
      );
      this.auditPausedAtMs = undefined;
      return true;
    }
    this.auditPauseTimer ??= this.clock.setTimeout(() => {
      this.auditPauseTimer = undefined;
      this.pump();
    }, bp.pollMs ?? 20);
    return false;
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
    if (!names.localId || !names.remoteId || !names.node) {
      this.deps.reporter.unresolved(pairKey(key), names);
      return;
    }
    const endpoint = this.deps.resolver.nodeEndpoint(names.node);
    if (!endpoint) {
      this.fail(key, names, item.reason, 'unknown-node', `no address for node ${names.node}`, 0);
      return;
    }
    if (item.reason !== 'signal') this.deps.reporter.reauth(names, item.reason);
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
      const refused = this.refuseWrite(
        { localId: names.localId, remoteId: names.remoteId, node: names.node },
        r.trust,
      );
      if (refused) {
        this.fail(key, names, item.reason, refused.reason, refused.message, r.durationMs);
        return;
      }
      let entry: CachedEntry;
      try {
        entry = this.writeEntry(key, r.expiresAtMs, 'client', r.trust);
      } catch (err) {
        const reason = (err as { reason?: unknown }).reason;
        this.fail(
          key,
          names,
          item.reason,
          reason === 'auth-map-full' ? reason : 'entry-write-failed',
          (err as Error).message,
          r.durationMs,
        );
        return;
      }
      this.clearFailures(pairKey(key));
      void this.deps.synReplay?.authenticated(key, r.peerEntryWritten);
      this.deps.reporter.clientSucceeded(
        names,
        {
          why: item.reason,
          expiresAtMs: r.expiresAtMs,
          durationMs: r.durationMs,
          entryExpiresAtMs: entry.expiresAtMs,
          localSerial: r.localSerial,
          peerSerials: r.peerSerials,
          peerNotAfterMs: r.peerNotAfterMs,
          tlsVersion: r.tlsVersion,
          cipher: r.cipher,
          channel: r.channel,
        },
        this.deps.cache.size,
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
    names: PairNames,
    why: WorkReason,
    reason: string,
    message: string,
    durationMs: number,
  ): void {
    this.deps.synReplay?.failed(key);
    const id = pairKey(key);
    const now = this.now();
    const state = this.pairs.get(id) ?? { attempts: 0, nextAttemptAtMs: 0, lastSignalAtMs: now };
    const delay = backoffMs(state.attempts, this.deps.options.retryBaseMs, this.deps.options.retryMaxMs);
    state.attempts++;
    state.nextAttemptAtMs = now + delay;
    if (why !== 'retry') state.origin = why;
    // A retry of a signalled pair is retried again only while signals for it go on, like the first.
    const origin = state.origin ?? why;
    if (why === 'signal') state.lastSignalAtMs = Math.max(state.lastSignalAtMs, now);
    this.pairs.set(id, state);
    if (why !== 'signal' && why !== 'preauth') this.revokeIfTrustLost(key, names, reason);
    this.deps.reporter.clientFailed(names, {
      why,
      reason,
      message,
      durationMs,
      attempt: state.attempts,
      retryInMs: delay,
    });
    // Retry on our own while the pair is still being asked for; otherwise the next signal retries.
    if (state.retryTimer) state.retryTimer.cancel();
    state.retryTimer = this.clock.setTimeout(() => {
      state.retryTimer = undefined;
      const window = this.deps.options.retryWindowMs ?? 30_000;
      const stillWanted = origin !== 'signal' || this.now() - state.lastSignalAtMs <= window;
      if (!this.closed && stillWanted && !this.deps.cache.checkLive(key)) {
        this.enqueue({ key, reason: 'retry' });
        return;
      }
      // Nobody asks for the pair any more (or it is live): forget its failures, so that the pairs
      // tracked stay those failing now and not every pair that ever failed. A later signal starts
      // over from the base delay.
      if (this.pairs.get(id) === state) this.pairs.delete(id);
    }, delay);
  }

  /**
   * Writes an earned entry. A full auth map (E2BIG from the kernel) gets one GC pass (onMapFull)
   * and one more try; still full, it throws with reason `auth-map-full` and nothing is written:
   * the pair stays unauthenticated (fail closed) and retries with backoff like any failure.
   */
  private writeEntry(
    key: AuthKey,
    expiresAtMs: number,
    origin: 'client' | 'server',
    trust: EntryTrust | undefined,
  ): CachedEntry {
    try {
      return this.deps.cache.set(key, { expiresAtMs }, origin, trust);
    } catch (err) {
      if ((err as { errno?: unknown }).errno !== E2BIG) throw err;
      const freed = this.deps.onMapFull?.() ?? 0;
      try {
        return this.deps.cache.set(key, { expiresAtMs }, origin, trust);
      } catch (again) {
        if ((again as { errno?: unknown }).errno !== E2BIG) throw again;
        throw Object.assign(
          new Error(
            `auth: write entry: the auth map is full (${this.deps.cache.size} entries; a GC pass freed ${freed})`,
            { cause: again },
          ),
          { reason: 'auth-map-full' },
        );
      }
    }
  }

  /**
   * Why a handshake's result must not be written now, or undefined to write it: the write check
   * (identity, inventory) and the trust bundles as they are at this moment.
   */
  private refuseWrite(
    names: { localId: string; remoteId: string; node: string },
    trust: EntryTrust | undefined,
  ): { reason: string; message: string } | undefined {
    const refused = this.deps.writeCheck?.(names);
    if (refused) return refused;
    if (trust && this.bundleFps) {
      const lost = trustLost(trust, this.bundleFps);
      if (lost)
        return { reason: 'bundle-revoked', message: `trust bundle changed during the handshake: ${lost}` };
    }
    return undefined;
  }

  /** A re-authentication failed: if the trust the entry was built on is gone too, delete it now. */
  private revokeIfTrustLost(key: AuthKey, names: PairNames, failure: string): void {
    const e = this.deps.cache.get(key);
    if (!e?.trust || !this.bundleFps) return;
    const lost = trustLost(e.trust, this.bundleFps);
    if (lost) this.revoke(key, names, lost, 'reauth-failed', failure);
  }

  private revoke(
    key: AuthKey,
    names: PairNames,
    why: string,
    trigger: 'bundle-changed' | 'reauth-failed',
    failure?: string,
  ): boolean {
    const e = this.deps.cache.get(key);
    const had = this.deps.cache.delete(key);
    this.deps.reporter.revoked(
      names,
      {
        message: why,
        trigger,
        ...(failure ? { failure } : {}),
        ...(e ? { origin: e.origin } : {}),
        ...(e?.trust
          ? { anchors: e.trust.chains.map((c) => ({ trustDomain: c.trustDomain, anchors: c.anchors })) }
          : {}),
      },
      this.deps.cache.size,
    );
    return had;
  }

  private clearFailures(id: string): void {
    const s = this.pairs.get(id);
    if (s?.retryTimer) s.retryTimer.cancel();
    this.pairs.delete(id);
  }

  private names(key: AuthKey): PairNames {
    return pairNames(this.deps.resolver, key);
  }

  private observe(o: SignalOutcome): void {
    this.deps.reporter.signalOutcome(o);
  }
}
