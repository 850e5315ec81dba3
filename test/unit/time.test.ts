import { describe, expect, it } from 'vitest';
import { MAX_TIMER_MS, systemClock } from '../../src/time.js';
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
