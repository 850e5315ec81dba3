import type { Clock, Timer } from '../time.js';

/** The time a window's counts cover: its first refusal to its record (ms since the Unix epoch). */
export interface WindowSpan {
  startedAtMs: number;
  endedAtMs: number;
}

export interface RefusalWindowsOptions<C> {
  clock: Clock;
  /** Length of a window (ms, > 0). */
  windowMs: number;
  /** Names the owner in the RangeError for a bad windowMs (e.g. `accept refusal audit`). */
  name: string;
  /** Writes the record of `key`'s window (or nothing, e.g. when nothing was counted). */
  write: (key: string, counts: C, span: WindowSpan) => void;
}

/**
 * Counts of refusals kept in time windows, one per key, each written as one audit record when its
 * window ends, so that a flood of refusals costs the audit trail a bounded number of records.
 *
 * The first refusal while no window is open starts one timer (on the injected Clock), windowMs
 * long; windows opened while it runs end with it. When it fires, or at close(), every open window
 * is handed to `write` (in the order they were opened) and dropped; the next refusal starts afresh.
 * After close() `at()` opens nothing and answers undefined: the owner records each refusal on its
 * own from then on, so nothing is lost at shutdown. A crash loses at most the open windows' counts.
 *
 * What is counted and what the record says are the owner's (AcceptRefusalAudit,
 * ChannelEventAudit); this is only the windows, the timer and the flush.
 *
 * @throws RangeError when windowMs is not > 0.
 */
export class RefusalWindows<C> {
  private readonly windows = new Map<string, { counts: C; startedAtMs: number }>();
  private timer: Timer | undefined;
  private closed = false;

  constructor(private readonly opts: RefusalWindowsOptions<C>) {
    if (!(opts.windowMs > 0)) throw new RangeError(`${opts.name}: windowMs must be > 0`);
  }

  /**
   * The counts of `key`'s open window; when there is none, one is opened now with the counts
   * `open()` makes. Undefined after close().
   */
  at(key: string, open: () => C): C | undefined {
    if (this.closed) return undefined;
    let w = this.windows.get(key);
    if (!w) {
      w = { counts: open(), startedAtMs: this.opts.clock.now() };
      this.windows.set(key, w);
    }
    this.timer ??= this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.opts.windowMs);
    return w.counts;
  }

  /** Writes the open windows' records; later refusals are the owner's to record. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.flush();
  }

  private flush(): void {
    const endedAtMs = this.opts.clock.now();
    for (const [key, w] of this.windows)
      this.opts.write(key, w.counts, { startedAtMs: w.startedAtMs, endedAtMs });
    this.windows.clear();
  }
}

/**
 * Adds one to `key` in `counts` when `key` is there already or `counts` names fewer than `max`
 * keys; true when counted, false when the caller counts it otherwise (so a flood of distinct keys
 * cannot grow a record without bound).
 */
export function countListed(counts: Map<string, number>, key: string, max: number): boolean {
  if (!counts.has(key) && counts.size >= max) return false;
  counts.set(key, (counts.get(key) ?? 0) + 1);
  return true;
}
