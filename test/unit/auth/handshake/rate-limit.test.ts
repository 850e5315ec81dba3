import { describe, expect, it } from 'vitest';
import { TokenBucketLimiter } from '../../../../src/auth/handshake/rate-limit.js';

describe('per-peer token bucket', () => {
  it('allows a burst, then refills at the rate', () => {
    const l = new TokenBucketLimiter({ ratePerSec: 2, burst: 3, maxKeys: 10 });
    const t = 1_000_000;
    expect([l.take('a', t), l.take('a', t), l.take('a', t), l.take('a', t)]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    expect(l.take('a', t + 499)).toBe(false);
    expect(l.take('a', t + 500)).toBe(true);
    expect(l.take('a', t + 500)).toBe(false);
    // Other peers are independent.
    expect(l.take('b', t)).toBe(true);
  });

  it('never holds more than the burst however long a peer was idle', () => {
    const l = new TokenBucketLimiter({ ratePerSec: 100, burst: 2, maxKeys: 10 });
    l.take('a', 0);
    const later = 3_600_000;
    expect([l.take('a', later), l.take('a', later), l.take('a', later)]).toEqual([true, true, false]);
  });

  it('tracks a bounded number of peers', () => {
    const l = new TokenBucketLimiter({ ratePerSec: 1, burst: 1, maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) l.take(`10.0.${i >> 8}.${i & 255}`, 0);
    expect(l.trackedKeys).toBe(100);
  });

  it('refuses nonsensical settings', () => {
    expect(() => new TokenBucketLimiter({ ratePerSec: 0, burst: 1, maxKeys: 1 })).toThrow(RangeError);
    expect(() => new TokenBucketLimiter({ ratePerSec: 1, burst: 0, maxKeys: 1 })).toThrow(RangeError);
  });
});
