/**
 * The wall clock and timers, behind one interface so that code whose behaviour depends on time
 * takes them injected and tests drive them (vitest fake timers, or a hand-stepped clock) instead
 * of sleeping. Kernel time (CLOCK_BOOTTIME) is a different clock: see src/datapath/clock.ts.
 */

/** An opaque timer handle, as returned by the clock that created it. */
export type TimerHandle = unknown;

export interface Clock {
  /** Wall-clock time, epoch milliseconds (as Date.now()). */
  now(): number;
  /** Runs fn once after ms milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /** Runs fn every ms milliseconds. */
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
}

/**
 * Date.now() and Node's timers, looked up at each call (so vitest's fake timers apply). Timers
 * are unref'd: background work (retries, resyncs, GC) never keeps the process alive by itself.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};
