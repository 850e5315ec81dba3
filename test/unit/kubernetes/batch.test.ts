import { describe, expect, it } from 'vitest';
import { EventBatch } from '../../../src/kubernetes/batch.js';
import { FakeClock } from '../../helpers/fake-clock.js';

describe('EventBatch', () => {
  it('applies a burst once, when the window of its first event ends', () => {
    const clock = new FakeClock(0);
    let applied = 0;
    const batch = new EventBatch(clock, 5, () => applied++);
    batch.schedule();
    clock.advance(3);
    batch.schedule(); // inside the window: no second timer, no later deadline
    expect(clock.pending).toBe(1);
    clock.advance(1);
    expect(applied).toBe(0);
    clock.advance(1);
    expect(applied).toBe(1);
    expect(clock.pending).toBe(0);
    batch.schedule(); // a new burst arms a new window
    clock.advance(5);
    expect(applied).toBe(2);
  });

  it('cancel() disarms the window (the owner applied early or closed) and is idempotent', () => {
    const clock = new FakeClock(0);
    let applied = 0;
    const batch = new EventBatch(clock, 5, () => applied++);
    batch.schedule();
    batch.cancel();
    batch.cancel();
    clock.advance(10);
    expect(applied).toBe(0);
    expect(clock.pending).toBe(0);
    batch.schedule();
    clock.advance(5);
    expect(applied).toBe(1);
  });
});
