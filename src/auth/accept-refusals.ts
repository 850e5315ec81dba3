import type { AuditSink } from '../audit/index.js';
import { systemClock, type Clock } from '../time.js';
import { countListed, RefusalWindows } from './refusal-windows.js';
import type { HandshakeFailureEvent } from './handshake/types.js';

/**
 * Reasons the handshake server and the node channel listener refuse a connection for at accept,
 * before any TLS: the peer is anonymous (nothing verified), and the refusal costs it one TCP connect.
 */
const ACCEPT_REFUSALS: ReadonlySet<string> = new Set([
  'rate-limited',
  'too-many-connections',
  'too-many-connections-from-address',
]);

/** The listener that refused: the per-pair handshake server or the node channel listener. */
export type AcceptListener = 'handshake' | 'channel';

/** Peer addresses named in a window's record; beyond it only counted (otherAddresses). */
const MAX_LISTED_ADDRESSES = 64;

/** A window's counts (its key: listener and reason). */
interface Counts {
  listener: AcceptListener;
  reason: string;
  count: number;
  byAddress: Map<string, number>;
  otherAddresses: number;
  message: string;
}

export interface AcceptRefusalAuditOptions {
  audit: AuditSink;
  /** Timers (the window) and now(); default the system clock. */
  clock?: Clock;
  /** Length of a window (ms): one record per reason and window at most. Default 10,000. */
  windowMs?: number;
}

/**
 * Audits the connections the handshake server and the node channel listener refuse at accept
 * (`rate-limited`, `too-many-connections`, `too-many-connections-from-address`) as one
 * `handshake-failed` record per listener, reason and window, with the count and the counts by peer
 * address, instead of one record each.
 *
 * Why: these refusals need no credential, only a TCP connect to the handshake port, and a record
 * each let anyone who can reach the port write thousands of never-dropped records a second into
 * the trail (about 3,000 a second from one loopback client): the database grows without bound
 * (audit.maxAge alone does not bound its size), the writer's queue rises, and with it the audit
 * backpressure that pauses this node's authentication. A window's record is written when the
 * window ends (a timer, windowMs after its first refusal) or at close(), so every refusal is in
 * exactly one record; a crash loses at most the open window's counts (windowMs). Metrics and the
 * server's own counters still count each refusal.
 */
export class AcceptRefusalAudit {
  private readonly windows: RefusalWindows<Counts>;

  constructor(opts: AcceptRefusalAuditOptions) {
    const audit = opts.audit;
    this.windows = new RefusalWindows<Counts>({
      clock: opts.clock ?? systemClock,
      windowMs: opts.windowMs ?? 10_000,
      name: 'accept refusal audit',
      write: (_key, w, span) =>
        audit.record({
          type: 'handshake-failed',
          outcome: 'failure',
          reason: w.reason,
          direction: 'server',
          details: {
            message: `refused ${w.count} connections at accept (${w.reason}); last: ${w.message}`,
            stage: 'accept',
            listener: w.listener,
            count: w.count,
            byAddress: Object.fromEntries(w.byAddress),
            otherAddresses: w.otherAddresses,
            startedAtMs: span.startedAtMs,
            endedAtMs: span.endedAtMs,
          },
        }),
    });
  }

  /**
   * Takes a failure of `listener`: true when it is an accept refusal (counted here, recorded with
   * its window), false when the caller records it itself. After close() accept refusals are recorded
   * one each again (nothing is lost at shutdown).
   */
  take(f: HandshakeFailureEvent, listener: AcceptListener = 'handshake'): boolean {
    if (f.stage !== 'accept' || !ACCEPT_REFUSALS.has(f.reason)) return false;
    const w = this.windows.at(`${listener}:${f.reason}`, () => ({
      listener,
      reason: f.reason,
      count: 0,
      byAddress: new Map(),
      otherAddresses: 0,
      message: '',
    }));
    if (!w) return false;
    w.count++;
    w.message = f.message;
    if (!countListed(w.byAddress, f.peerAddress, MAX_LISTED_ADDRESSES)) w.otherAddresses++;
    return true;
  }

  /** Writes the open windows' records and records later refusals one each. Idempotent. */
  close(): void {
    this.windows.close();
  }
}
