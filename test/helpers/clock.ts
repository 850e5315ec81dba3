import type { Clock, TimerHandle } from '../../src/time.js';

interface ManualTimer {
  id: number;
  at: number;
  fn: () => void;
  everyMs: number | undefined;
}

/**
 * A Clock that moves only when the test calls advance(): timers fire in due order, synchronously,
 * inside advance(). Tests use it to reach a deadline without sleeping and to show that nothing is
 * due before it.
 */
export class ManualClock implements Clock {
  private timers = new Map<number, ManualTimer>();
  private nextId = 1;

  constructor(private nowMs = 1_700_000_000_000) {}

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, undefined);
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as number);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, Math.max(1, ms));
  }

  clearInterval(handle: TimerHandle): void {
    this.timers.delete(handle as number);
  }

  /** Timers not yet fired (intervals count once). */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by ms, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const target = this.nowMs + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.timers.values()) if (t.at <= target && (!next || t.at < next.at)) next = t;
      if (!next) break;
      this.nowMs = Math.max(this.nowMs, next.at);
      if (next.everyMs === undefined) this.timers.delete(next.id);
      else next.at += next.everyMs;
      next.fn();
    }
    this.nowMs = target;
  }

  private add(fn: () => void, ms: number, everyMs: number | undefined): number {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.nowMs + Math.max(0, ms), fn, everyMs });
    return id;
  }
}
