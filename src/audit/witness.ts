import type { TrustBundles } from '../spiffe/index.js';
import { systemClock, type Clock, type Timer } from '../time.js';
import { SignedHeadError, type SignedHeadReason } from './errors.js';
import { openSignedHead, type AuditHead } from './signed-head.js';
import type { AuditSink } from './sink.js';
import type { AuditStore } from './store.js';

/** A signed head as carried on the wire: the note and the signer's X509-SVID chain (DER, leaf first). */
export interface SignedHeadEnvelope {
  note: string;
  certChain: readonly Buffer[];
}

/** A head a witness recorded, as read back from its trail. */
export interface WitnessedHeadRecord extends SignedHeadEnvelope {
  /** When the witness accepted it, ms since the epoch. */
  witnessedAtMs: number;
  /** Seq of the `head-witnessed` row in the witness's own trail. */
  witnessSeq: number;
}

export type SubmitResult =
  | { accepted: true; duplicate: boolean; head: AuditHead }
  | {
      accepted: false;
      reason: SignedHeadReason;
      message: string;
      /** Over the submitter's refusal-row limit: only counted and summarised (log it quietly too). */
      summarised?: true;
    };

export interface WitnessOptions {
  /** Where accepted heads (`head-witnessed`) and refusals (`head-rejected`) are recorded. */
  sink: AuditSink;
  /** Read side of the same trail: the newest head already witnessed per node survives restarts. */
  store: AuditStore;
  /** Current trust bundles the signer's X509-SVID must chain to. */
  bundles: () => TrustBundles;
  /** This witness's own SPIFFE ID (recorded as local_id), when it has one. */
  selfId?: string;
  /**
   * Most a head's meshauth-time may differ from this witness's clock at receipt, ms (refused as
   * clock-skew). Default 5 min. The signer's SVID is checked at the receive time, and the row is
   * dated with it: `audit verify --witnesses` checks the SVID at the witness's receive time, not at
   * the time the head claims, so a stolen key (expired or not) cannot sign heads back-dated to
   * before the theft and have them count.
   */
  maxSkewMs?: number;
  /**
   * How many refusals per submitter become one `head-rejected` row each: a token bucket of `burst`
   * rows, refilled at `perMinute`. Refusals past it are counted (observer) and summarised in one
   * `head-rejected` row per submitter per `summaryIntervalMs` (reason `rate-limited`, details: the
   * count per reason, first and last time, the last message), so a peer submitting garbage cannot
   * fill this trail. Accepted heads are never limited. Defaults: burst 10, 10 per minute, 60 s.
   */
  refusalLimit?: { burst?: number; perMinute?: number; summaryIntervalMs?: number };
  observer?: WitnessObserver;
  clock?: Clock;
}

/** Counts refusals (meshauth_witness_heads_refused_total): `recorded` false = only in a summary row. */
export interface WitnessObserver {
  refused(reason: SignedHeadReason, recorded: boolean): void;
}

/** Refusals of one submitter past the limit, waiting for the summary row. */
interface RefusalSummary {
  count: number;
  reasons: Record<string, number>;
  firstAtMs: number;
  lastAtMs: number;
  lastMessage: string;
}

/**
 * The witness side of witnessed heads: checks a signed head submitted by a node and records it in
 * this trail as a `head-witnessed` event (remote_id = the node's SPIFFE ID, node = its name;
 * details: seq, hash, the note and the signer chain, so anyone can re-check the signature later).
 *
 * A head is refused, with a stable reason and never recorded as witnessed, when it is malformed,
 * its chain does not verify at the witness's receive time (untrusted-signer: also an SVID expired
 * or not yet valid then), its meshauth-time is more than maxSkewMs from that time (clock-skew),
 * origin / signer / submitter differ (wrong-node),
 * the signature does not verify (bad-signature), its seq is below the newest head witnessed for
 * that node (replayed), or it has the seq of a witnessed head with another hash
 * (conflicting-head: the node signed two different trails). Refusals are recorded (up to the
 * refusal limit per submitter, the rest summarised: see refusalLimit) as
 * `head-rejected` failure events with that reason. Only equal seqs can be compared here: the
 * witness does not hold the rows between two heads, `meshauth audit verify --witnesses` does.
 */
export class Witness {
  private readonly newest = new Map<string, { seq: number; hash: string }>();
  private readonly clock: Clock;
  private readonly burst: number;
  private readonly refillPerMs: number;
  private readonly summaryMs: number;
  /** Token bucket per submitter (key: SPIFFE ID, or '' for calls without one). */
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();
  private readonly summaries = new Map<string, RefusalSummary>();
  private summaryTimer: Timer | undefined;
  private closed = false;

  constructor(private readonly opts: WitnessOptions) {
    this.clock = opts.clock ?? systemClock;
    const l = opts.refusalLimit ?? {};
    this.burst = l.burst ?? 10;
    this.refillPerMs = (l.perMinute ?? 10) / 60_000;
    this.summaryMs = l.summaryIntervalMs ?? 60_000;
  }

  /** Take one refusal row from the submitter's bucket; false = over the limit. */
  private takeToken(key: string, now: number): boolean {
    // a bucket refilled to full says nothing: drop it, so the map holds only recent submitters
    for (const [k, b] of this.buckets)
      if (b.tokens + (now - b.atMs) * this.refillPerMs >= this.burst) this.buckets.delete(k);
    const b = this.buckets.get(key) ?? { tokens: this.burst, atMs: now };
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.atMs) * this.refillPerMs);
    b.atMs = now;
    this.buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Write one `head-rejected` row per submitter for the refusals summarised since the last flush. */
  flushRefusals(): void {
    this.summaryTimer?.cancel();
    this.summaryTimer = undefined;
    const now = this.clock.now();
    for (const [key, sum] of this.summaries) {
      this.opts.sink.record({
        type: 'head-rejected',
        outcome: 'failure',
        reason: 'rate-limited',
        atMs: now,
        ...(this.opts.selfId ? { localId: this.opts.selfId } : {}),
        ...(key ? { remoteId: key } : {}),
        details: {
          refused: sum.count,
          reasons: sum.reasons,
          firstAtMs: sum.firstAtMs,
          lastAtMs: sum.lastAtMs,
          message:
            `witness: ${sum.count} more refused heads from ${key || 'unauthenticated callers'} (over the refusal-row limit); last: ${sum.lastMessage}`.slice(
              0,
              512,
            ),
        },
      });
    }
    this.summaries.clear();
  }

  /** Write pending refusal summaries and stop the summary timer. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.flushRefusals();
    this.closed = true;
  }

  /**
   * Check and record one submission. `submitter` is the SPIFFE ID of the authenticated mTLS peer
   * (undefined when the call came without one, e.g. the Unix socket: refused as not-allowed).
   */
  submit(env: SignedHeadEnvelope, submitter: string | undefined): SubmitResult {
    const now = this.clock.now();
    const refuse = (reason: SignedHeadReason, message: string, spiffeId?: string): SubmitResult => {
      // rows are limited per authenticated caller: that is who pays for them, whatever it signed
      const key = submitter ?? '';
      if (this.closed || !this.takeToken(key, now)) {
        this.opts.observer?.refused(reason, false);
        if (this.closed) return { accepted: false, reason, message, summarised: true };
        const sum = this.summaries.get(key) ?? {
          count: 0,
          reasons: {},
          firstAtMs: now,
          lastAtMs: now,
          lastMessage: '',
        };
        sum.count++;
        sum.reasons[reason] = (sum.reasons[reason] ?? 0) + 1;
        sum.lastAtMs = now;
        sum.lastMessage = message;
        this.summaries.set(key, sum);
        this.summaryTimer ??= this.clock.setTimeout(() => this.flushRefusals(), this.summaryMs);
        return { accepted: false, reason, message, summarised: true };
      }
      this.opts.observer?.refused(reason, true);
      this.opts.sink.record({
        type: 'head-rejected',
        outcome: 'failure',
        reason,
        atMs: now,
        ...(this.opts.selfId ? { localId: this.opts.selfId } : {}),
        ...((spiffeId ?? submitter) ? { remoteId: (spiffeId ?? submitter)! } : {}),
        details: { message: message.slice(0, 512) },
      });
      return { accepted: false, reason, message };
    };
    if (submitter === undefined)
      return refuse('not-allowed', 'witness: heads are only taken from an authenticated node (mTLS)');
    if (this.opts.selfId !== undefined && submitter === this.opts.selfId)
      return refuse(
        'not-allowed',
        `witness: ${submitter} submitted its own audit head; a node cannot witness itself (list other nodes or the relay in audit.witnesses)`,
      );
    let verified;
    try {
      verified = openSignedHead(env.note, env.certChain, this.opts.bundles(), {
        now: new Date(now),
        expectSpiffeId: submitter,
      });
    } catch (err) {
      if (err instanceof SignedHeadError) return refuse(err.reason, err.message);
      return refuse('malformed', `witness: ${(err as Error).message}`);
    }
    const { head, spiffeId } = verified;
    const skew = this.opts.maxSkewMs ?? 300_000;
    if (Math.abs(head.atMs - now) > skew)
      return refuse(
        'clock-skew',
        `witness: head signed at ${new Date(head.atMs).toISOString()}, but the witness time is ${new Date(now).toISOString()} (more than ${skew} ms apart: is the node's clock right?)`,
        spiffeId,
      );
    const hashHex = head.hash.toString('hex');
    const last = this.newestFor(spiffeId);
    if (last) {
      if (head.treeSize < last.seq) {
        return refuse(
          'replayed',
          `witness: head at seq ${head.treeSize} is older than the head already witnessed for ${spiffeId} (seq ${last.seq})`,
          spiffeId,
        );
      }
      if (head.treeSize === last.seq) {
        if (last.hash === hashHex) return { accepted: true, duplicate: true, head };
        return refuse(
          'conflicting-head',
          `witness: ${spiffeId} signed seq ${head.treeSize} with hash ${hashHex}, but seq ${last.seq} was witnessed with ${last.hash}`,
          spiffeId,
        );
      }
    }
    this.newest.set(spiffeId, { seq: head.treeSize, hash: hashHex });
    this.opts.sink.record({
      type: 'head-witnessed',
      outcome: 'info',
      atMs: now,
      ...(this.opts.selfId ? { localId: this.opts.selfId } : {}),
      remoteId: spiffeId,
      node: head.node,
      details: {
        seq: head.treeSize,
        hash: hashHex,
        // the row's own time (atMs) is the witness's receive time; the signer's claim is kept apart
        headAtMs: head.atMs,
        note: env.note,
        certChain: env.certChain.map((c) => c.toString('base64')),
      },
    });
    return { accepted: true, duplicate: false, head };
  }

  /** Heads witnessed for one node (SPIFFE ID), oldest first, as stored in this trail. */
  list(spiffeId: string, limit = 10_000): WitnessedHeadRecord[] {
    return listWitnessedHeads(this.opts.store, spiffeId, limit);
  }

  private newestFor(spiffeId: string): { seq: number; hash: string } | undefined {
    const cached = this.newest.get(spiffeId);
    if (cached) return cached;
    // the identity filter also matches local_id: when spiffeId is (or once was) this witness's
    // own ID, rows of heads it witnessed for other nodes match too; only remote_id = spiffeId counts
    const row = this.opts.store
      .query({ types: ['head-witnessed'], identity: spiffeId, newestFirst: true, limit: 1000 })
      .find((r) => r.remoteId === spiffeId);
    if (!row?.details) return undefined;
    const seq = row.details['seq'];
    const hash = row.details['hash'];
    if (typeof seq !== 'number' || typeof hash !== 'string') return undefined;
    const found = { seq, hash };
    this.newest.set(spiffeId, found);
    return found;
  }
}

/** `head-witnessed` rows of a trail for one node, oldest first (at most `limit`, the newest ones). */
export function listWitnessedHeads(
  store: AuditStore,
  spiffeId: string,
  limit = 10_000,
): WitnessedHeadRecord[] {
  const rows = store.query({ types: ['head-witnessed'], identity: spiffeId, newestFirst: true, limit });
  const out: WitnessedHeadRecord[] = [];
  for (const r of rows.reverse()) {
    if (r.remoteId !== spiffeId || !r.details) continue;
    const note = r.details['note'];
    const chain = r.details['certChain'];
    if (typeof note !== 'string' || !Array.isArray(chain)) continue;
    out.push({
      note,
      certChain: chain.filter((c): c is string => typeof c === 'string').map((c) => Buffer.from(c, 'base64')),
      witnessedAtMs: r.atMs,
      witnessSeq: r.seq,
    });
  }
  return out;
}
