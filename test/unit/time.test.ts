import { describe, expect, it } from 'vitest';
import {
  MAX_TIMER_MS,
  systemClock,
  WALL_CLOCK_STEP_REPORT_MS,
  WallClockGuard,
  type WallClockStep,
} from '../../src/time.js';
import { FakeClock } from '../helpers/fake-clock.js';

describe('systemClock', () => {
  it('tells wall-clock time and runs timers after their delay, unless cancelled', async () => {
    const before = Date.now();
    expect(systemClock.now()).toBeGreaterThanOrEqual(before);
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      const cancelled = systemClock.setTimeout(() => order.push('cancelled'), 5);
      cancelled.cancel();
      cancelled.cancel();
      systemClock.setTimeout(() => order.push('late'), 30);
      systemClock.setTimeout(() => order.push('early'), 10);
      let n = 0;
      const every = systemClock.setInterval(() => {
        if (++n === 3) {
          every.cancel();
          systemClock.setTimeout(resolve, 40);
        }
      }, 5);
    });
    expect(order).toEqual(['early', 'late']);
  });

  it('clamps delays beyond the longest timer instead of firing at once', async () => {
    let fired = false;
    const t = systemClock.setTimeout(() => (fired = true), 10 * MAX_TIMER_MS);
    // A delay past 2^31-1 ms would fire on the next tick without the clamp; an immediate timer
    // started afterwards runs first either way, so this is the settle point.
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 0));
    await new Promise<void>((resolve) => setImmediate(resolve));
    t.cancel();
    expect(fired).toBe(false);
  });
});

describe('FakeClock', () => {
  it('runs due timers in time order as time advances, intervals repeatedly', () => {
    const clock = new FakeClock(1_000);
    const seen: Array<[string, number]> = [];
    clock.setTimeout(() => seen.push(['b', clock.now()]), 20);
    clock.setTimeout(() => {
      seen.push(['a', clock.now()]);
      clock.setTimeout(() => seen.push(['nested', clock.now()]), 5);
    }, 10);
    const every = clock.setInterval(() => seen.push(['tick', clock.now()]), 8);
    clock.advance(19);
    expect(seen).toEqual([
      ['tick', 1_008],
      ['a', 1_010],
      ['nested', 1_015],
      ['tick', 1_016],
    ]);
    expect(clock.now()).toBe(1_019);
    every.cancel();
    clock.advance(100);
    expect(seen.at(-1)).toEqual(['b', 1_020]);
    expect(clock.pending).toBe(0);
  });
});

describe('WallClockGuard', () => {
  /** A wall clock and a monotonic clock the test moves by hand. */
  function clocks(): { wall: number; mono: number; guard: WallClockGuard } {
    const c = { wall: 1_800_000_000_000, mono: 5_000, guard: undefined as unknown as WallClockGuard };
    c.guard = new WallClockGuard(
      () => c.wall,
      () => c.mono,
    );
    return c;
  }
  const advance = (c: { wall: number; mono: number }, ms: number): void => {
    c.wall += ms;
    c.mono += ms;
  };

  it('follows the wall clock while it is not stepped', () => {
    const c = clocks();
    expect(c.guard.now()).toBe(c.wall);
    advance(c, 1234);
    expect(c.guard.now()).toBe(c.wall);
    expect(c.guard.behindMs()).toBe(0);
  });

  it('does not follow a step back: goes on from the later time, reports the step once', () => {
    const c = clocks();
    const steps: WallClockStep[] = [];
    c.guard.onStep((s) => steps.push(s));
    c.guard.now();
    const real = (): number => c.wall + 1_800_000; // what the clock said before the step
    c.wall -= 1_800_000;
    expect(c.guard.now()).toBe(real());
    advance(c, 5000);
    expect(c.guard.now()).toBe(real());
    expect(c.guard.behindMs()).toBe(1_800_000);
    expect(steps).toEqual([{ stepMs: -1_800_000, behindMs: 1_800_000 }]);
    // Set right again: caught up, reported, nothing behind.
    c.wall += 1_800_000;
    expect(c.guard.now()).toBe(c.wall);
    expect(steps[1]).toEqual({ stepMs: 1_800_000, behindMs: 0 });
  });

  it('follows a step forward at once and keeps it when the clock is set back later', () => {
    const c = clocks();
    const steps: WallClockStep[] = [];
    c.guard.onStep((s) => steps.push(s));
    c.guard.now();
    c.wall += 3_600_000;
    expect(c.guard.now()).toBe(c.wall);
    const ahead = c.wall;
    c.wall -= 3_600_000;
    expect(c.guard.now()).toBe(ahead);
    expect(steps.map((s) => s.stepMs)).toEqual([3_600_000, -3_600_000]);
    expect(steps[1]!.behindMs).toBe(3_600_000);
  });

  it('reports a clock set back in steps each under the threshold once they add up to it', () => {
    const c = clocks();
    const steps: WallClockStep[] = [];
    c.guard.onStep((s) => steps.push(s));
    const start = c.guard.now();
    // an hour back, 900 ms at a time: no single reading sees a step of a second
    for (let i = 0; i < 4000; i++) {
      c.wall -= 900;
      expect(c.guard.now()).toBe(start);
    }
    expect(c.guard.behindMs()).toBe(3_600_000);
    // every second reading has moved it 1,800 ms since the last report
    expect(steps.length).toBe(2000);
    expect(steps.every((s) => s.stepMs === -1800)).toBe(true);
    expect(steps.at(-1)).toEqual({ stepMs: -1800, behindMs: 3_600_000 });
  });

  it('ignores read jitter below the report threshold and survives a throwing listener', () => {
    const c = clocks();
    const steps: WallClockStep[] = [];
    c.guard.onStep(() => {
      throw new Error('listener failed');
    });
    const off = c.guard.onStep((s) => steps.push(s));
    c.guard.now();
    c.wall -= WALL_CLOCK_STEP_REPORT_MS - 1;
    c.guard.now();
    expect(steps).toEqual([]);
    c.wall -= WALL_CLOCK_STEP_REPORT_MS;
    expect(() => c.guard.now()).not.toThrow();
    expect(steps).toHaveLength(1);
    off();
    c.wall -= 5000;
    c.guard.now();
    expect(steps).toHaveLength(1);
  });
});
