import { MAX_TIMER_MS, type Clock, type Timer } from '../../src/time.js';

function clamp(ms: number, min: number): number {
  return Math.min(Math.max(min, Number.isFinite(ms) ? ms : 0), MAX_TIMER_MS);
}

interface Scheduled {
  id: number;
  at: number;
  fn: () => void;
  every: number | undefined;
}

/**
 * A Clock the test moves by hand: now() stands still until advance(), which runs the timers that
 * fall due in time order (timers they start run too when they fall inside the step).
 */
export class FakeClock implements Clock {
  private current: number;
  private nextId = 1;
  private readonly timers = new Map<number, Scheduled>();

  constructor(startMs = Date.now()) {
    this.current = startMs;
  }

  now(): number {
    return this.current;
  }

  /** Like the system clock, the delay is clamped to 0..MAX_TIMER_MS. */
  setTimeout(fn: () => void, ms: number): Timer {
    return this.add(fn, clamp(ms, 0), undefined);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.add(fn, clamp(ms, 1), clamp(ms, 1));
  }

  /** Number of timers waiting to fire. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.current + ms;
    for (;;) {
      let next: Scheduled | undefined;
      for (const t of this.timers.values()) {
        if (t.at <= end && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
      }
      if (!next) break;
      this.current = Math.max(this.current, next.at);
      if (next.every !== undefined) next.at += next.every;
      else this.timers.delete(next.id);
      next.fn();
    }
    this.current = end;
  }

  private add(fn: () => void, ms: number, every: number | undefined): Timer {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.current + ms, fn, every });
    return { cancel: () => void this.timers.delete(id) };
  }
}
