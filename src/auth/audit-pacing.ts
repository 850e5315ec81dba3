import type { Logger } from 'pino';
import type { AuditSink } from '../audit/index.js';
import { silentLogger } from '../log.js';
import { systemClock, type Clock, type Timer } from '../time.js';
import { HandshakeError } from './handshake/errors.js';

/**
 * The audit writer's queue as the auth path sees it, for backpressure: at `highWater` queued events
 * or more no new entry is started (client side: AuthManager starts no handshake; responder side:
 * ResponderAuditPacer holds peer-initiated pairs), and work starts again once the depth is at
 * `lowWater` or below, so entries are never written faster than their audit records are saved.
 * Events (numbers of audit events).
 */
export interface AuditBackpressure {
  /** Audit events waiting to be written (AuditWriter.queueDepth). */
  depth(): number;
  highWater: number;
  lowWater: number;
  /** How often the depth is checked again while paused, ms. Default 20. */
  pollMs?: number;
}

/** Which responder a peer-initiated pair arrived on: the per-pair handshake server or a node channel. */
export type ResponderPath = 'handshake' | 'channel';

/** A peer-initiated pair waiting for the audit queue, as logged and audited. */
export interface ResponderPair {
  path: ResponderPath;
  peerNode?: string | undefined;
  /** Our workload (the entry's local side) and the peer's. */
  localId?: string | undefined;
  remoteId?: string | undefined;
}

export interface ResponderAuditPacerOptions {
  backpressure: AuditBackpressure;
  /** Timers (the poll, each pair's deadline) and now(); default the system clock. */
  clock?: Clock;
  /**
   * Pairs waiting at once at most; more are refused (audit-busy) at once. Bounds what a burst of
   * peers (or one peer sending pair messages over its channel) can hold in memory. Shared fairly
   * among peer nodes: a pair of a peer below its share (maxWaiting / peers waiting, see the class
   * doc) always gets a place, so one peer cannot hold them all. Default 256.
   */
  maxWaiting?: number;
  /** Receives one summary `handshake-failed` record per episode that refused pairs (see below). */
  audit?: AuditSink;
  /**
   * An episode that lasts longer writes its summary of the refusals so far this often (ms), and
   * goes on counting from there: a queue kept above its mark does not keep its refusals out of the
   * trail (nor does a crash lose more than this much of them). Default 60,000.
   */
  summaryEveryMs?: number;
  logger?: Logger;
  /** Each pair that waited and went on (`paced`) or was refused (`refused`), for metrics. */
  onOutcome?: (outcome: 'paced' | 'refused', path: ResponderPath) => void;
}

/** The share key of pairs whose peer node is not known: they share one peer's share. */
const UNKNOWN_PEER = 'unknown';

/** Refused pairs listed by name in an episode's audit record; beyond it only counted. */
const MAX_LISTED_PAIRS = 64;

interface Waiter {
  pair: ResponderPair;
  /** The peer node whose share the pair counts against (peerNode, or UNKNOWN_PEER). */
  peer: string;
  resolve: () => void;
  reject: (err: HandshakeError) => void;
  timer: Timer;
  cleanup: () => void;
}

interface Episode {
  startedAtMs: number;
  /** Start of what the next summary record counts (the episode's start, or the last record). */
  sinceMs: number;
  /** Summary records written for this episode so far. */
  records: number;
  /** Pairs paced and refused in the whole episode (the counts below start afresh after a record). */
  episodePaced: number;
  episodeRefused: number;
  maxDepth: number;
  paced: number;
  refused: number;
  byPath: Record<ResponderPath, number>;
  byNode: Map<string, number>;
  /** Refusals of peer nodes beyond the MAX_LISTED_PAIRS named in byNode. */
  otherNodes: number;
  pairs: Array<{ path: ResponderPath; node?: string; localId?: string; remoteId?: string }>;
}

export interface ResponderPacerStats {
  /** Pairs waiting for the queue now. */
  waiting: number;
  /** 1 while the queue is above its high-water mark as the responders see it (an episode), else 0. */
  paused: number;
  paced: number;
  refused: number;
}

/**
 * Paces the entries this node writes for pairs its peers initiate (the reverse entry of a per-pair
 * handshake, a node channel's pair message) by this node's own audit queue, as AuthManager paces
 * the handshakes it starts: peers are bounded only by their own maxConcurrent, so without it many
 * peers together could push the queue past its bound (decision events are never dropped, so memory
 * would grow instead).
 *
 * `admit` lets a pair through at once while the queue is under `highWater`. At or above it an
 * episode starts: every pair waits (clock timers, no sleeping) until the queue is at `lowWater` or
 * below, for at most its budget (what is left of its handshake deadline). A pair whose budget runs
 * out, or that finds `maxWaiting` pairs waiting already, is refused with HandshakeError reason
 * `audit-busy`: no entry is written (fail closed), and the initiator retries it with its backoff.
 *
 * Fairness. The `maxWaiting` places are shared among peer nodes: a peer's share is
 * floor(maxWaiting / n), n the peer nodes with pairs waiting, itself included. When every place
 * is taken, a pair of a peer holding fewer places than its share takes the place of the newest
 * waiting pair of the peer holding the most (that one is refused, audit-busy); a pair of a peer
 * at or above its share is refused. So one peer (a node that floods pair messages over its
 * channel, or many handshakes) can fill the places only while nobody else needs them, and a peer
 * below its share always gets a place (there are at most maxWaiting peers with a share >= 1).
 * Peers are told apart by the node the responder verified (pair.peerNode).
 *
 * Audit of refusals. A refusal is a decision, and `handshake-failed` is never dropped by the
 * writer; but one record per refused pair would be written exactly while the queue is over its
 * bound, by the pairs refused because it is, and peers retry: the refusals themselves would keep
 * the queue growing. So a refused pair gets no record of its own (the responders skip
 * `audit-busy`, see isPacedRefusal); each episode that refused pairs gets one `handshake-failed`
 * record (reason audit-busy, direction server) once the queue is back at `lowWater` (or at close()),
 * with the counts by path and peer node and the first MAX_LISTED_PAIRS pairs by name. An episode
 * that lasts longer than `summaryEveryMs` (a queue some peer keeps above its mark) writes the
 * summary so far every `summaryEveryMs` (details.ongoing true) and counts afresh from there. One
 * bounded record per episode and interval, never dropped: every refusal is accounted for, and none
 * adds to the overflow.
 */
export class ResponderAuditPacer {
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly maxWaiting: number;
  private readonly summaryEveryMs: number;
  private readonly waiters = new Set<Waiter>();
  /** The same waiters by peer node (insertion order: newest last). */
  private readonly byPeer = new Map<string, Set<Waiter>>();
  private episode: Episode | undefined;
  private poll: Timer | undefined;
  private pacedTotal = 0;
  private refusedTotal = 0;
  private closed = false;

  constructor(private readonly opts: ResponderAuditPacerOptions) {
    const bp = opts.backpressure;
    if (!(bp.lowWater >= 0 && bp.highWater > bp.lowWater))
      throw new RangeError('responder audit pacer: need 0 <= lowWater < highWater');
    this.clock = opts.clock ?? systemClock;
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'auth-responder' });
    this.maxWaiting = opts.maxWaiting ?? 256;
    if (!(this.maxWaiting >= 0)) throw new RangeError('responder audit pacer: maxWaiting must be >= 0');
    this.summaryEveryMs = opts.summaryEveryMs ?? 60_000;
    if (!(this.summaryEveryMs > 0)) throw new RangeError('responder audit pacer: summaryEveryMs must be > 0');
  }

  /**
   * Whether a peer-initiated pair may write its entry now. Returns undefined when it may (the
   * common case, synchronous); otherwise a promise that resolves when the queue has drained to
   * lowWater, or rejects with HandshakeError `audit-busy` when it has not within `budgetMs` (ms;
   * <= 0 refuses at once), or `aborted` when `signal` fires first (the connection ended; not
   * counted as refused). Never writes anything itself.
   */
  admit(pair: ResponderPair, budgetMs: number, signal?: AbortSignal): Promise<void> | undefined {
    if (this.closed) return Promise.reject(new HandshakeError('aborted', 'pace pair: closing'));
    const depth = this.opts.backpressure.depth();
    if (!this.episode) {
      if (depth < this.opts.backpressure.highWater) return undefined;
      this.startEpisode(depth);
      this.armPoll();
    } else if (this.check(depth)) {
      return undefined;
    }
    const ep = this.episode!;
    ep.maxDepth = Math.max(ep.maxDepth, depth);
    if (signal?.aborted) return Promise.reject(abortedError());
    if (!(budgetMs > 0))
      return Promise.reject(this.refuse(pair, depth, 'no time left before the handshake deadline'));
    const peer = pair.peerNode ?? UNKNOWN_PEER;
    if (this.waiters.size >= this.maxWaiting) {
      const own = this.byPeer.get(peer)?.size ?? 0;
      const share = Math.floor(this.maxWaiting / (this.byPeer.size + (own === 0 ? 1 : 0)));
      const displaced = own < share ? this.newestOfLargest(own) : undefined;
      if (!displaced)
        return Promise.reject(
          this.refuse(
            pair,
            depth,
            `${this.waiters.size} pairs already waiting (limit ${this.maxWaiting}), ${own} of them from ${peer} (its share ${share})`,
          ),
        );
      // The newest pair of the peer holding the most places gives its place up (see the class doc).
      this.remove(displaced);
      displaced.cleanup();
      displaced.reject(
        this.refuse(
          displaced.pair,
          depth,
          `its place went to a pair of ${peer}, below its share of the ${this.maxWaiting} places`,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.remove(w)) return;
        w.cleanup();
        reject(abortedError());
      };
      const w: Waiter = {
        pair,
        peer,
        resolve,
        reject,
        timer: this.clock.setTimeout(() => {
          if (!this.remove(w)) return;
          w.cleanup();
          reject(
            this.refuse(
              pair,
              this.opts.backpressure.depth(),
              `not drained to ${this.opts.backpressure.lowWater} within ${Math.round(budgetMs)} ms`,
            ),
          );
        }, budgetMs),
        cleanup: () => {
          w.timer.cancel();
          signal?.removeEventListener('abort', onAbort);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(w);
      let mine = this.byPeer.get(peer);
      if (!mine) this.byPeer.set(peer, (mine = new Set()));
      mine.add(w);
    });
  }

  /**
   * The newest waiter of the peer holding the most places, when that peer holds more than
   * `own + 1` (so that giving one place to a peer holding `own` never makes it hold more than the
   * other). With every place taken and own below its share, such a peer exists (pigeonhole).
   */
  private newestOfLargest(own: number): Waiter | undefined {
    let largest: Set<Waiter> | undefined;
    for (const ws of this.byPeer.values()) if (!largest || ws.size > largest.size) largest = ws;
    if (!largest || largest.size <= own + 1) return undefined;
    let newest: Waiter | undefined;
    for (const w of largest) newest = w;
    return newest;
  }

  /** Removes a waiter (both indexes); false when it was not waiting. */
  private remove(w: Waiter): boolean {
    if (!this.waiters.delete(w)) return false;
    const mine = this.byPeer.get(w.peer);
    mine?.delete(w);
    if (mine?.size === 0) this.byPeer.delete(w.peer);
    return true;
  }

  stats(): ResponderPacerStats {
    return {
      waiting: this.waiters.size,
      paused: this.episode ? 1 : 0,
      paced: this.pacedTotal,
      refused: this.refusedTotal,
    };
  }

  /**
   * Refuses every waiting pair (aborted) and writes the summary of an episode still open, so that
   * no refusal goes unrecorded. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll?.cancel();
    this.poll = undefined;
    for (const w of [...this.waiters]) {
      this.remove(w);
      w.cleanup();
      w.reject(new HandshakeError('aborted', 'pace pair: closing'));
    }
    if (this.episode) this.endEpisode(this.opts.backpressure.depth(), 'closing');
  }

  private startEpisode(depth: number): void {
    const now = this.clock.now();
    this.episode = {
      startedAtMs: now,
      sinceMs: now,
      records: 0,
      episodePaced: 0,
      episodeRefused: 0,
      ...freshCounts(depth),
    };
    this.logger.warn(
      {
        event: 'auth_responder_audit_backpressure',
        audit_queue: depth,
        high_water: this.opts.backpressure.highWater,
        low_water: this.opts.backpressure.lowWater,
      },
      'audit queue above its high-water mark: pairs initiated by peers wait for it to drain',
    );
  }

  /** The episode ends when the queue is at lowWater: waiters go on. True when it ended. */
  private check(depth: number): boolean {
    const ep = this.episode;
    if (!ep) return true;
    ep.maxDepth = Math.max(ep.maxDepth, depth);
    if (depth > this.opts.backpressure.lowWater) return false;
    const released = [...this.waiters];
    this.waiters.clear();
    this.byPeer.clear();
    for (const w of released) {
      w.cleanup();
      ep.paced++;
      ep.episodePaced++;
      this.pacedTotal++;
      this.outcome('paced', w.pair.path);
      w.resolve();
    }
    this.endEpisode(depth, 'drained');
    return true;
  }

  private endEpisode(depth: number, why: 'drained' | 'closing'): void {
    const ep = this.episode!;
    this.episode = undefined;
    const now = this.clock.now();
    this.logger.info(
      {
        event: 'auth_responder_audit_backpressure_end',
        audit_queue: depth,
        low_water: this.opts.backpressure.lowWater,
        paused_ms: now - ep.startedAtMs,
        paced: ep.episodePaced,
        refused: ep.episodeRefused,
        ended: why,
      },
      why === 'drained'
        ? 'audit queue drained: pairs initiated by peers are written again'
        : 'responders closing with the audit queue above its low-water mark',
    );
    // One record per episode, written now that there is room (or at shutdown): see the class doc.
    this.writeSummary(ep, now, false);
  }

  /**
   * The summary record of the refusals counted since ep.sinceMs, if any. `ongoing`: the episode
   * goes on (written every summaryEveryMs), and its counts start afresh.
   */
  private writeSummary(ep: Episode, now: number, ongoing: boolean): void {
    if (ep.refused > 0) {
      ep.records++;
      this.recordSummary(ep, now, ongoing);
    }
    if (ongoing) Object.assign(ep, { sinceMs: now }, freshCounts(this.opts.backpressure.depth()));
  }

  private recordSummary(ep: Episode, now: number, ongoing: boolean): void {
    this.opts.audit?.record({
      type: 'handshake-failed',
      outcome: 'failure',
      reason: 'audit-busy',
      direction: 'server',
      details: {
        message: `refused ${ep.refused} pairs initiated by peers while the audit queue was above its high-water mark${ongoing ? ' (episode goes on)' : ''}`,
        stage: 'entry',
        refused: ep.refused,
        paced: ep.paced,
        byPath: ep.byPath,
        byNode: Object.fromEntries(ep.byNode),
        otherNodes: ep.otherNodes,
        pairs: ep.pairs,
        pairsNotListed: ep.refused - ep.pairs.length,
        startedAtMs: ep.startedAtMs,
        sinceMs: ep.sinceMs,
        endedAtMs: now,
        ongoing,
        record: ep.records,
        maxAuditQueue: ep.maxDepth,
        highWater: this.opts.backpressure.highWater,
        lowWater: this.opts.backpressure.lowWater,
      },
    });
  }

  private refuse(pair: ResponderPair, depth: number, why: string): HandshakeError {
    const ep = this.episode!;
    ep.refused++;
    ep.episodeRefused++;
    this.refusedTotal++;
    ep.byPath[pair.path]++;
    const node = pair.peerNode ?? 'unknown';
    // Peer node names come from the inventory (bounded), but keep the map bounded regardless.
    if (ep.byNode.has(node) || ep.byNode.size < MAX_LISTED_PAIRS)
      ep.byNode.set(node, (ep.byNode.get(node) ?? 0) + 1);
    else ep.otherNodes++;
    if (ep.pairs.length < MAX_LISTED_PAIRS) {
      ep.pairs.push({
        path: pair.path,
        ...(pair.peerNode ? { node: pair.peerNode } : {}),
        ...(pair.localId ? { localId: pair.localId } : {}),
        ...(pair.remoteId ? { remoteId: pair.remoteId } : {}),
      });
    }
    this.outcome('refused', pair.path);
    return new HandshakeError(
      'audit-busy',
      `pace pair: audit queue at ${depth} (high-water ${this.opts.backpressure.highWater}): ${why}`,
      { details: { auditQueue: depth } },
    );
  }

  private outcome(outcome: 'paced' | 'refused', path: ResponderPath): void {
    try {
      this.opts.onOutcome?.(outcome, path);
    } catch (err) {
      this.logger.error({ event: 'auth_responder_on_outcome_threw', err }, 'onOutcome callback threw');
    }
  }

  /** One poll timer while an episode is open; re-armed until the queue drains. */
  private armPoll(): void {
    if (this.poll || this.closed) return;
    this.poll = this.clock.setTimeout(() => {
      this.poll = undefined;
      if (this.closed) return;
      // Waiters go on, and the episode's refusals are recorded, when it ends: watch until it does.
      if (this.check(this.opts.backpressure.depth())) return;
      const ep = this.episode;
      const now = this.clock.now();
      if (ep && now - ep.sinceMs >= this.summaryEveryMs) this.writeSummary(ep, now, true);
      this.armPoll();
    }, this.opts.backpressure.pollMs ?? 20);
  }
}

function freshCounts(
  depth: number,
): Omit<Episode, 'startedAtMs' | 'sinceMs' | 'records' | 'episodePaced' | 'episodeRefused'> {
  return {
    maxDepth: depth,
    paced: 0,
    refused: 0,
    byPath: { handshake: 0, channel: 0 },
    byNode: new Map(),
    otherNodes: 0,
    pairs: [],
  };
}

/**
 * Whether a responder failure is a refusal by ResponderAuditPacer: it gets no audit record of its
 * own (its episode's summary record counts it; see ResponderAuditPacer).
 */
export function isPacedRefusal(reason: string): boolean {
  return reason === 'audit-busy';
}

function abortedError(): HandshakeError {
  return new HandshakeError('aborted', 'pace pair: the pair ended while it waited for the audit queue');
}
