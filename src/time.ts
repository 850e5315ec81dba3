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

/** The real clock: Date.now and Node's timers (unref'd). */
export const systemClock: Clock = {
  now: () => Date.now(),
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
