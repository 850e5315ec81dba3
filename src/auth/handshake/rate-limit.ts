import { LRUCache } from 'lru-cache';

export interface TokenBucketOptions {
  /** Tokens added per second. */
  ratePerSec: number;
  /** Bucket size (the burst a fresh peer may spend at once). */
  burst: number;
  /** Peers tracked at most; the least recently seen is forgotten first (bounded memory). */
  maxKeys: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

/**
 * One token bucket per key (remote address). A forgotten key starts again with a full bucket, so
 * maxKeys must exceed the number of peers expected to be active at once.
 */
export class TokenBucketLimiter {
  private readonly buckets: LRUCache<string, Bucket>;

  constructor(private readonly opts: TokenBucketOptions) {
    if (!(opts.ratePerSec > 0) || !(opts.burst >= 1) || !(opts.maxKeys >= 1)) {
      throw new RangeError('token bucket: ratePerSec must be > 0, burst and maxKeys >= 1');
    }
    this.buckets = new LRUCache<string, Bucket>({ max: opts.maxKeys });
  }

  /** Take one token for key; false when its bucket is empty. */
  take(key: string, nowMs: number): boolean {
    const b = this.buckets.get(key);
    if (!b) {
      this.buckets.set(key, { tokens: this.opts.burst - 1, atMs: nowMs });
      return true;
    }
    const elapsed = Math.max(0, nowMs - b.atMs);
    b.tokens = Math.min(this.opts.burst, b.tokens + (elapsed * this.opts.ratePerSec) / 1000);
    b.atMs = nowMs;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get trackedKeys(): number {
    return this.buckets.size;
  }
}
