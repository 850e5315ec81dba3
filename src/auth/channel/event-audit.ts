import type { AuditEventInput, AuditSink } from '../../audit/index.js';
import type { Clock } from '../../time.js';
import { countListed, RefusalWindows } from '../refusal-windows.js';

export interface ChannelEventAuditOptions {
  audit: AuditSink;
  clock: Clock;
  /** Records written one each per source and window; beyond, counted in the window's summary. Default 64. */
  perWindow?: number;
  /** Window length (ms). Default 10,000. */
  windowMs?: number;
}

/** A source's window: its records so far, and what was counted instead of recorded. */
interface Counts {
  recorded: number;
  counted: number;
  byReason: Map<string, number>;
  byStage: Map<string, number>;
}

/** Reasons counted by name in a summary; beyond it only counted. */
const MAX_LISTED_REASONS = 32;

/**
 * Bounds the `handshake-failed` records the node channels write for what they refuse, per source
 * (the peer node, or UNKNOWN_NODE, e.g. for a connection whose node SVID was not verified): the
 * first `perWindow` refusals of a window are recorded one each, the rest are counted, and one
 * summary record per source (reason `rate-limited`, details: the count by reason and stage) is
 * written when the window ends (windowMs after its first refusal) or at close().
 *
 * Why: nothing else bounds them. Anyone who can reach the channel port and complete a TLS handshake
 * (any self-signed certificate) is refused after it with a record, with no connection limit or
 * per-address rate limit on that port; and a peer node can send `pair` messages for pairs nothing
 * supports, each refused with a record, as fast as its channel carries them. These records are
 * decisions and never dropped by the writer, so without a bound a peer could grow the trail and the
 * writer's queue (whose high-water mark pauses this node's authentication) at will. Every refusal
 * is in one record, its own or its window's summary; a crash loses at most an open window's counts.
 */
export class ChannelEventAudit {
  private readonly perWindow: number;
  private readonly windows: RefusalWindows<Counts>;

  constructor(private readonly opts: ChannelEventAuditOptions) {
    this.perWindow = opts.perWindow ?? 64;
    const windowMs = opts.windowMs ?? 10_000;
    if (!(this.perWindow >= 0)) throw new RangeError('channel event audit: perWindow must be >= 0');
    this.windows = new RefusalWindows<Counts>({
      clock: opts.clock,
      windowMs,
      name: 'channel event audit',
      write: (source, w, span) => {
        if (w.counted === 0) return;
        opts.audit.record({
          type: 'handshake-failed',
          outcome: 'failure',
          reason: 'rate-limited',
          ...(source === UNKNOWN_NODE ? {} : { node: source }),
          details: {
            message: `node channels: ${w.counted} further refusals from ${source} within ${windowMs} ms, counted here instead of one record each (the first ${w.recorded} were recorded)`,
            stage: 'channel-summary',
            source,
            count: w.counted,
            recorded: w.recorded,
            byReason: Object.fromEntries(w.byReason),
            byStage: Object.fromEntries(w.byStage),
            startedAtMs: span.startedAtMs,
            endedAtMs: span.endedAtMs,
          },
        });
      },
    });
  }

  /**
   * Records `event` (a refusal with `reason` at `stage`, from `source`), or counts it in its
   * source's window. After close() every event is recorded on its own (nothing lost at shutdown).
   */
  record(source: string, stage: string, event: AuditEventInput): void {
    const w = this.windows.at(source, () => ({
      recorded: 0,
      counted: 0,
      byReason: new Map(),
      byStage: new Map(),
    }));
    if (!w) return this.opts.audit.record(event);
    if (w.recorded < this.perWindow) {
      w.recorded++;
      this.opts.audit.record(event);
      return;
    }
    w.counted++;
    const reason = event.reason ?? 'unknown';
    if (!countListed(w.byReason, reason, MAX_LISTED_REASONS))
      w.byReason.set('other', (w.byReason.get('other') ?? 0) + 1);
    w.byStage.set(stage, (w.byStage.get(stage) ?? 0) + 1);
  }

  /** Writes the open windows' summaries. Idempotent. */
  close(): void {
    this.windows.close();
  }
}

/** The source of refusals whose peer node is not known (not verified yet, or not named). */
export const UNKNOWN_NODE = 'unknown-node';
