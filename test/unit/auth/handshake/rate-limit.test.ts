import { describe, expect, it } from 'vitest';
import { rateLimitKey, TokenBucketLimiter } from '../../../../src/auth/handshake/rate-limit.js';

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

describe('per-peer keys and bounded memory', () => {
  it('keys IPv6 peers by /64, IPv4 and IPv4-mapped IPv6 by address', () => {
    expect(rateLimitKey('2001:db8:1:2::1')).toBe('2001:db8:1:2:0:0:0:0/64');
    expect(rateLimitKey('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2:0:0:0:0/64');
    expect(rateLimitKey('2001:db8:1:3::1')).toBe('2001:db8:1:3:0:0:0:0/64');
    expect(rateLimitKey('2001:db8:1:2::1', 48)).toBe('2001:db8:1:0:0:0:0:0/48');
    expect(rateLimitKey('2001:db8:1:2::1', 128)).toBe('2001:db8:1:2:0:0:0:1/128');
    expect(rateLimitKey('10.0.0.1')).toBe('10.0.0.1');
    expect(rateLimitKey('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(rateLimitKey('unknown')).toBe('unknown');
  });

  it('one /64 shares one bucket however many addresses it uses', () => {
    const l = new TokenBucketLimiter({ ratePerSec: 1, burst: 3, maxKeys: 100 });
    const results = Array.from({ length: 10 }, (_, i) => l.take(`2001:db8:0:1::${(i + 1).toString(16)}`, 0));
    expect(results.filter(Boolean)).toHaveLength(3);
    expect(l.take('2001:db8:0:2::1', 0)).toBe(true);
    expect(l.trackedKeys).toBe(2);
    // a configurable prefix: /128 gives every address its own bucket
    const full = new TokenBucketLimiter({ ratePerSec: 1, burst: 1, maxKeys: 100, ipv6PrefixLength: 128 });
    expect([full.take('2001:db8::1', 0), full.take('2001:db8::2', 0)]).toEqual([true, true]);
    expect(
      () => new TokenBucketLimiter({ ratePerSec: 1, burst: 1, maxKeys: 1, ipv6PrefixLength: 0 }),
    ).toThrow(RangeError);
  });

  it('an exhausted peer stays exhausted however many new peers arrive (no reset by eviction)', () => {
    const l = new TokenBucketLimiter({ ratePerSec: 1, burst: 2, maxKeys: 4 });
    expect([l.take('10.0.0.1', 0), l.take('10.0.0.1', 0), l.take('10.0.0.1', 0)]).toEqual([
      true,
      true,
      false,
    ]);
    // a flood of fresh addresses at the same instant
    for (let i = 2; i < 1000; i++) l.take(`10.0.${i >> 8}.${i & 255}`, 0);
    expect(l.trackedKeys).toBe(4);
    expect(l.take('10.0.0.1', 0)).toBe(false);
    expect(l.take('10.0.0.1', 999)).toBe(false);
    expect(l.take('10.0.0.1', 1000)).toBe(true);
  });

  it('new peers share one overflow bucket while the table is full of refilling buckets', () => {
    const l = new TokenBucketLimiter({ ratePerSec: 1, burst: 2, maxKeys: 2 });
    l.take('10.0.0.1', 0);
    l.take('10.0.0.2', 0);
    // both buckets are still refilling: newcomers share the overflow bucket (burst 2)
    expect([l.take('10.0.1.1', 0), l.take('10.0.1.2', 0), l.take('10.0.1.3', 0)]).toEqual([
      true,
      true,
      false,
    ]);
    expect(l.trackedKeys).toBe(2);
    // once a tracked bucket has refilled completely it is forgotten and its slot reused
    expect(l.take('10.0.2.1', 1000)).toBe(true);
    expect(l.trackedKeys).toBe(2);
  });
});
