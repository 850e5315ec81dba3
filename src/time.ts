/**
 * Wall-clock time and timers as an injectable seam. Code whose behaviour depends on time (expiry,
 * renewal, debounce, polling, ready timeouts) takes a Clock, so that tests drive time with a fake
 * one instead of sleeping and racing the real clock.
 *
 * (The datapath's CLOCK_BOOTTIME conversion, src/datapath/clock.ts, is a different concern: it maps
 * between two clocks the kernel and user space read; it takes its wall clock from here.)
 */

/** setTimeout's longest delay (2^31 - 1 ms, about 24.8 days); longer delays fire at once in Node. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A timer started by a Clock. `cancel()` is idempotent. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /**
   * Runs `fn` once after `ms` milliseconds (clamped to 0..MAX_TIMER_MS; callers that need longer
   * re-arm). Timers do not keep the process alive.
   */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Runs `fn` every `ms` milliseconds until cancelled. Does not keep the process alive. */
  setInterval(fn: () => void, ms: number): Timer;
}

function clampMs(ms: number): number {
  return Math.min(Math.max(0, Number.isFinite(ms) ? ms : 0), MAX_TIMER_MS);
}

/** A step of the wall clock, as WallClockGuard saw it. */
export interface WallClockStep {
  /** How far the wall clock jumped against the monotonic clock (ms; negative: backwards). */
  stepMs: number;
  /** How far the wall clock is now behind the time this process goes by (ms, >= 0). */
  behindMs: number;
}

/** Steps smaller than this are read jitter (two clocks read one after the other), not reported. */
export const WALL_CLOCK_STEP_REPORT_MS = 1000;

/**
 * The wall clock meshauthd goes by: Date.now(), except that it never runs backwards while the
 * process runs.
 *
 * CLOCK_REALTIME minus CLOCK_MONOTONIC changes only when the wall clock is stepped (NTP slewing
 * adjusts both alike). The guard keeps the highest such offset it has seen and answers
 * monotonic + that offset: a step forward is followed at once (certificates expire early, entries
 * get shorter: fail closed); a step backward is not followed, so a clock set back cannot make an
 * expired certificate valid again, nor make a certificate's notAfter look further away than it is
 * when an entry's expiry is converted to CLOCK_BOOTTIME. The price: a wrong step forward that is
 * corrected later keeps this process ahead (it refuses what it should accept) until it restarts.
 * Every step of at least WALL_CLOCK_STEP_REPORT_MS is reported to the onStep listeners, measured
 * against the offset of the last report (or of the first reading), not of the last reading: a
 * clock moved in many steps each under the threshold is reported once they add up to it.
 *
 * Hand-written: no library offers this; it is a comparison of two clocks Node reads natively.
 */
export class WallClockGuard {
  private highestOffsetMs: number | undefined;
  private lastOffsetMs = 0;
  /** Offset when a step was last reported (or at the first reading): steps are measured from it. */
  private reportedOffsetMs = 0;
  private readonly listeners = new Set<(step: WallClockStep) => void>();

  constructor(
    private readonly readWallMs: () => number = () => Date.now(),
    private readonly readMonotonicMs: () => number = () => Number(process.hrtime.bigint()) / 1e6,
  ) {}

  /** Milliseconds since the Unix epoch, never less than an earlier answer of this guard. */
  now(): number {
    const mono = this.readMonotonicMs();
    const offset = this.readWallMs() - mono;
    if (this.highestOffsetMs === undefined) {
      this.highestOffsetMs = offset;
      this.lastOffsetMs = offset;
      this.reportedOffsetMs = offset;
    }
    const stepMs = offset - this.reportedOffsetMs;
    this.lastOffsetMs = offset;
    if (offset > this.highestOffsetMs) this.highestOffsetMs = offset;
    if (Math.abs(stepMs) >= WALL_CLOCK_STEP_REPORT_MS) {
      this.reportedOffsetMs = offset;
      const step = { stepMs: Math.round(stepMs), behindMs: Math.round(this.highestOffsetMs - offset) };
      for (const l of this.listeners) {
        try {
          l(step);
        } catch {
          // a listener (log, metric) must never break the clock
        }
      }
    }
    return Math.round(mono + this.highestOffsetMs);
  }

  /** How far the wall clock is behind now() (ms, >= 0; 0 unless it was stepped back). */
  behindMs(): number {
    this.now();
    return Math.max(0, Math.round((this.highestOffsetMs ?? 0) - this.lastOffsetMs));
  }

  /** Calls `fn` on every reported step (seen on a later now()); returns the unsubscribe. */
  onStep(fn: (step: WallClockStep) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

/** The process's wall clock (see WallClockGuard); systemClock.now() reads it. */
export const wallClock = new WallClockGuard();

/** The real clock: the guarded wall clock (never backwards, see WallClockGuard) and Node's timers (unref'd). */
export const systemClock: Clock = {
  now: () => wallClock.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, clampMs(ms));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, Math.max(1, clampMs(ms)));
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};
