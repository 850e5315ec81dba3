import type { Logger } from 'pino';
import type { AuditSink } from '../audit/index.js';
import type { Clock } from '../time.js';
import { AcceptRefusalAudit } from './accept-refusals.js';
import { isPacedRefusal } from './audit-pacing.js';
import type { HandshakeFailureEvent } from './handshake/types.js';
import type { PairNames } from './pair.js';

/** Optional hooks for metrics. */
export interface AuthObserver {
  signal?(outcome: SignalOutcome): void;
  handshake?(result: 'success' | 'failure', reason: string, durationMs: number): void;
  entries?(count: number): void;
  /** An entry was revoked because an authority it relied on left the trust bundle. */
  revoked?(trigger: 'bundle-changed' | 'reauth-failed'): void;
  /** Work other than a signal (a retry, re-authentication, pre-authentication) found the queue full. */
  workDropped?(why: WorkReason): void;
  /** The node channel listener refused a connection at accept (meshauth_channel_accept_refused_total). */
  channelAcceptRefused?(reason: string): void;
}

/** What became of an auth-required signal. */
export type SignalOutcome =
  | 'queued'
  | 'pending'
  | 'live'
  | 'backoff'
  | 'queue-full'
  /** Identity or node numbers without a name, or an auth type other than SPIFFE mTLS. */
  | 'unresolved'
  /** A pod address the inventory does not know yet (nothing to authenticate until it does). */
  | 'unresolved-address';

/** Why the manager started a handshake. */
export type WorkReason =
  'signal' | 'reauth-expiry' | 'reauth-rotation' | 'reauth-bundle' | 'retry' | 'preauth';

/** An entry deleted because the trust it was built on is gone (audit reason `bundle-revoked`). */
export interface Revocation {
  /** Why the trust is gone (which authority left which bundle). */
  message: string;
  /** A bundle change, or a failed re-authentication that found the trust gone. */
  trigger: 'bundle-changed' | 'reauth-failed';
  /** The re-authentication's failure reason (trigger reauth-failed). */
  failure?: string;
  origin?: string;
  /** Fingerprints of the authorities the entry relied on, per trust domain. */
  anchors?: Array<{ trustDomain: string; anchors: string[] }>;
}

/** Which node channel and which identity proofs an entry was written from (auth.mode channel). */
export interface ChannelProvenance {
  /** Random id of the node channel. */
  id: string;
  peerNode: string;
  /** Sequence number of the pair message on that channel. */
  pairSeq: number;
  localProof: { spiffeId: string; serial: string };
  remoteProof: { spiffeId: string; serials: string[]; proofId: string };
}

/** A handshake this node initiated and the entry it wrote. */
export interface ClientSuccess {
  why: WorkReason;
  expiresAtMs: number;
  durationMs: number;
  /** Expiry of the entry as written. */
  entryExpiresAtMs: number;
  localSerial?: string | undefined;
  peerSerials?: string[] | undefined;
  peerNotAfterMs?: number | undefined;
  tlsVersion?: string | undefined;
  cipher?: string | undefined;
  /** Set when the entry came from node-channel proofs instead of a per-pair handshake. */
  channel?: ChannelProvenance | undefined;
}

/** A handshake this node initiated that wrote no entry. */
export interface ClientFailure {
  why: WorkReason;
  /** Stable reason code (handshake error reasons, unknown-node, entry-write-failed, ...). */
  reason: string;
  message: string;
  durationMs: number;
  /** Failures in a row for this pair, this one included. */
  attempt: number;
  retryInMs: number;
}

/** A client this node's handshake server verified, whose reverse entry was written. */
export interface ServerSuccess {
  localId: string;
  remoteId: string;
  peerNode: string;
  expiresAtMs: number;
  durationMs?: number | undefined;
  peerSerials?: string[] | undefined;
  localSerial?: string | undefined;
  tlsVersion?: string | undefined;
  cipher?: string | undefined;
  /** Set when the entry came from node-channel proofs instead of a per-pair handshake. */
  channel?: ChannelProvenance | undefined;
}

/**
 * The one place where auth outcomes become audit events, log lines and metrics, for both sides of
 * the handshake (the manager as client, the handshake server's results) and for what the manager
 * decides on the way (signals, re-authentication, pre-authentication, rotation).
 *
 * Audit event types and log `event` names are stable (docs/OPERATIONS, the e2e tests read them).
 * Metrics bind late (the metrics registry starts after the auth path): `observer` is read at each call.
 */
export class AuthReporter {
  private readonly acceptRefusals: AcceptRefusalAudit;

  constructor(
    private readonly deps: {
      audit: AuditSink;
      /** The auth component's logger. */
      logger: Logger;
      observer?: AuthObserver;
      /** Timers of the accept-refusal windows (AcceptRefusalAudit); default the system clock. */
      clock?: Clock;
      /** Window of the accept-refusal records (ms); default 10,000. */
      acceptRefusalWindowMs?: number;
    },
  ) {
    this.acceptRefusals = new AcceptRefusalAudit({
      audit: deps.audit,
      ...(deps.clock ? { clock: deps.clock } : {}),
      ...(deps.acceptRefusalWindowMs !== undefined ? { windowMs: deps.acceptRefusalWindowMs } : {}),
    });
  }

  /**
   * The node channel listener refused a connection at accept, before any TLS (NodeChannels
   * `onAcceptRefused`): counted in the metric, audited in the accept-refusal windows (one record
   * per reason and window, listener `channel`), never one record each.
   */
  channelAcceptRefused(f: HandshakeFailureEvent): void {
    this.deps.observer?.channelAcceptRefused?.(f.reason);
    if (this.acceptRefusals.take(f, 'channel')) return;
    // After close(), or a reason that is no accept refusal: one record each, nothing lost.
    this.deps.audit.record({
      type: 'handshake-failed',
      outcome: 'failure',
      reason: f.reason,
      direction: 'server',
      details: { message: f.message, peer: f.peer, stage: f.stage, listener: 'channel' },
    });
  }

  /**
   * Writes the records of the accept refusals counted so far (AcceptRefusalAudit); later ones are
   * recorded one each. Call after the handshake server closed, before the audit writer. Idempotent.
   */
  close(): void {
    this.acceptRefusals.close();
  }

  /** The audit sink outcome events go to (the GC writes its own removals there too). */
  get audit(): AuditSink {
    return this.deps.audit;
  }

  /** What became of a signal (metrics only). */
  signalOutcome(outcome: SignalOutcome): void {
    this.deps.observer?.signal?.(outcome);
  }

  /** A signal that starts work (aggregated per pair and window by the audit sink). */
  signal(
    names: PairNames,
    direction: 'egress' | 'ingress',
    mode: 'enforce' | 'permissive' = 'enforce',
  ): void {
    this.deps.audit.record({ type: 'signal', outcome: 'info', ...names, direction, details: { mode } });
  }

  /**
   * The queue was full: the work is dropped. A signal's drop is one of its outcomes; other work is
   * counted apart (workDropped), so that signal outcomes add up to the signals the datapath sent.
   */
  queueFull(pair: string, depth: number, why: WorkReason = 'signal'): void {
    this.deps.logger.warn(
      { event: 'auth_queue_full', pair, queue: depth, why },
      'auth queue full: dropping request (the next signal retries)',
    );
    if (why === 'signal') this.signalOutcome('queue-full');
    else this.deps.observer?.workDropped?.(why);
  }

  unresolved(pair: string, names: PairNames): void {
    this.deps.logger.warn(
      {
        event: 'auth_unresolved',
        pair,
        local_id: names.localId,
        remote_id: names.remoteId,
        node: names.node,
      },
      'auth: cannot resolve the pair to SPIFFE IDs and a node; not authenticating',
    );
    this.signalOutcome('unresolved');
  }

  /** A handshake that was not asked for by a signal (re-authentication, retry, pre-authentication). */
  reauth(names: PairNames, why: WorkReason): void {
    this.deps.audit.record({ type: 'reauth', outcome: 'info', ...names, details: { why } });
  }

  /** Client side: handshake done and entry written. `entries` is the cache size after the write. */
  clientSucceeded(names: PairNames, s: ClientSuccess, entries: number): void {
    this.deps.audit.record({
      type: 'handshake-succeeded',
      outcome: 'success',
      ...names,
      direction: 'client',
      details: {
        why: s.why,
        expiresAtMs: s.expiresAtMs,
        durationMs: s.durationMs,
        localSerial: s.localSerial,
        peerSerials: s.peerSerials,
        peerNotAfterMs: s.peerNotAfterMs,
        tlsVersion: s.tlsVersion,
        cipher: s.cipher,
        ...(s.channel ? { channel: s.channel } : {}),
      },
    });
    this.deps.audit.record({
      type: 'entry-written',
      outcome: 'success',
      ...names,
      direction: 'client',
      details: { expiresAtMs: s.entryExpiresAtMs },
    });
    this.deps.observer?.handshake?.('success', 'ok', s.durationMs);
    this.deps.observer?.entries?.(entries);
    this.deps.logger.info(
      {
        local_id: names.localId,
        remote_id: names.remoteId,
        node: names.node,
        event: 'auth_succeeded',
        why: s.why,
        duration_ms: s.durationMs,
        expires_at: new Date(s.expiresAtMs).toISOString(),
      },
      'pair authenticated; entry written',
    );
  }

  /** Client side: no entry written (fail closed); the manager retries after `retryInMs`. */
  clientFailed(names: PairNames, f: ClientFailure): void {
    const unreachable = f.reason === 'peer-unreachable' || f.reason === 'timeout';
    this.deps.audit.record({
      type: unreachable ? 'peer-unreachable' : 'handshake-failed',
      outcome: 'failure',
      reason: f.reason,
      ...names,
      direction: 'client',
      details: {
        why: f.why,
        message: f.message,
        durationMs: f.durationMs,
        attempt: f.attempt,
        retryInMs: f.retryInMs,
      },
    });
    this.deps.observer?.handshake?.('failure', f.reason, f.durationMs);
    this.deps.logger.warn(
      {
        event: 'auth_failed',
        local_id: names.localId,
        remote_id: names.remoteId,
        node: names.node,
        reason: f.reason,
        err: f.message,
        attempt: f.attempt,
        retry_in_ms: f.retryInMs,
      },
      `auth failed (${f.reason}): no entry written`,
    );
  }

  /** Server side: a client was verified and the reverse entry written. `entries` is the cache size after the write. */
  serverSucceeded(r: ServerSuccess, entries: number): void {
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
        ...(r.channel ? { channel: r.channel } : {}),
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
    this.deps.observer?.entries?.(entries);
    if (r.durationMs !== undefined) this.deps.observer?.handshake?.('success', 'ok', r.durationMs);
    this.deps.logger.info(
      {
        event: 'server_auth_succeeded',
        local_id: r.localId,
        remote_id: r.remoteId,
        node: r.peerNode,
        duration_ms: r.durationMs,
        expires_at: new Date(r.expiresAtMs).toISOString(),
      },
      'peer authenticated us for a pair; entry written',
    );
  }

  /** Server side: a refused connection or failed handshake (the server logs it itself, rate-limited). */
  serverFailed(f: HandshakeFailureEvent): void {
    this.deps.observer?.handshake?.('failure', f.reason, f.durationMs);
    // Refused because this node's audit queue is behind: counted in the pacer's one record per
    // episode instead of a record each (audit-pacing.ts, ResponderAuditPacer).
    if (isPacedRefusal(f.reason)) return;
    // Refused at accept (no credential needed to cause it): one record per reason and window.
    if (this.acceptRefusals.take(f)) return;
    this.deps.audit.record({
      type: 'handshake-failed',
      outcome: 'failure',
      reason: f.reason,
      localId: f.localId,
      remoteId: f.remoteId,
      node: f.peerNode,
      direction: 'server',
      details: { message: f.message, peer: f.peer, stage: f.stage, durationMs: f.durationMs },
    });
  }

  /**
   * Our SVID for a workload was renewed: audited, then `reauthenticate` queues its pairs (it
   * returns how many), then logged with that count.
   */
  svidRotated(
    ev: { spiffeId: string; notAfterMs: number; previousNotAfterMs: number; serial: string },
    reauthenticate: () => number,
  ): void {
    this.deps.audit.record({
      type: 'svid-rotated',
      outcome: 'info',
      localId: ev.spiffeId,
      details: {
        notAfterMs: ev.notAfterMs,
        previousNotAfterMs: ev.previousNotAfterMs,
        serial: ev.serial,
      },
    });
    const pairs = reauthenticate();
    this.deps.logger.info(
      { event: 'reauth_scheduled', local_id: ev.spiffeId, pairs },
      're-authenticating after rotation',
    );
  }

  /** An entry was deleted because an authority it relied on left the trust bundle. */
  revoked(names: PairNames, r: Revocation, entries: number): void {
    this.deps.audit.record({
      type: 'entry-removed',
      outcome: 'info',
      reason: 'bundle-revoked',
      ...names,
      details: { ...r },
    });
    this.deps.observer?.revoked?.(r.trigger);
    this.deps.observer?.entries?.(entries);
    this.deps.logger.warn(
      {
        event: 'entry_revoked',
        reason: 'bundle-revoked',
        local_id: names.localId,
        remote_id: names.remoteId,
        node: names.node,
        trigger: r.trigger,
      },
      `auth entry revoked: ${r.message}`,
    );
  }

  /** Pairs the policy implies, queued before their first packet. */
  preauthQueued(pairs: number, queued: number): void {
    this.deps.logger.info(
      { event: 'preauth_queued', pairs, queued },
      'authenticating policy-implied pairs before their first packet',
    );
  }
}
