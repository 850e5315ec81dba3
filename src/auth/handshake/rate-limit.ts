import { isIPv4 } from 'node:net';
import { ipToBigInt } from '../../config/index.js';

export interface TokenBucketOptions {
  /** Tokens added per second. */
  ratePerSec: number;
  /** Bucket size (the burst a fresh peer may spend at once). */
  burst: number;
  /** Peer keys tracked at most (bounded memory). */
  maxKeys: number;
  /**
   * IPv6 peers share one bucket per prefix of this length (default 64: one /64 is what a single
   * host is commonly given, RFC 4291 §2.5.1, so a host cannot mint fresh buckets from its
   * interface identifiers). 128 keys by full address.
   */
  ipv6PrefixLength?: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

/**
 * The bucket key of a remote address: IPv4 (also IPv4-mapped IPv6, ::ffff:a.b.c.d) by full
 * address, other IPv6 by its `/prefixLength` network (`2001:db8:1:2::/64`). Anything that does not
 * parse as an IP address is its own key.
 */
export function rateLimitKey(address: string, ipv6PrefixLength = 64): string {
  // The common case, checked first because it runs on every accepted connection: a plain IPv4
  // address is its own key (the general parse below would return it unchanged).
  if (isIPv4(address)) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  const ip = ipToBigInt(address);
  if (!ip) return address;
  if (ip.family === 4) return address;
  const shift = BigInt(128 - ipv6PrefixLength);
  const network = (ip.value >> shift) << shift;
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((network >> BigInt(i * 16)) & 0xffffn).toString(16));
  return `${groups.join(':')}/${ipv6PrefixLength}`;
}

/**
 * One token bucket per peer key (see rateLimitKey), in bounded memory.
 *
 * Forgetting a bucket must never hand its peer a fresh burst, so only a bucket that has refilled
 * completely (forgetting it changes nothing) is evicted, least recently used first. When the table
 * is full of buckets that are still refilling, new peers share one overflow bucket with the same
 * rate and burst until a slot frees up: a flood of fresh addresses is throttled as a whole and
 * never resets a peer it has exhausted.
 */
export class TokenBucketLimiter {
  /** Insertion order = least recently used first. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly prefix: number;
  /** Shared by new peers while the table is full of buckets that are still refilling. */
  private overflow: Bucket | undefined;

  constructor(private readonly opts: TokenBucketOptions) {
    if (!(opts.ratePerSec > 0) || !(opts.burst >= 1) || !(opts.maxKeys >= 1)) {
      throw new RangeError('token bucket: ratePerSec must be > 0, burst and maxKeys >= 1');
    }
    this.prefix = opts.ipv6PrefixLength ?? 64;
    if (!Number.isInteger(this.prefix) || this.prefix < 1 || this.prefix > 128) {
      throw new RangeError('token bucket: ipv6PrefixLength must be an integer in 1..128');
    }
  }

  /** Take one token for the peer at `address`; false when its bucket is empty. */
  take(address: string, nowMs: number): boolean {
    return this.takeKey(rateLimitKey(address, this.prefix), nowMs);
  }

  /** take() for a bucket key the caller chose (e.g. a known peer's full address, not its /64). */
  takeKey(key: string, nowMs: number): boolean {
    let b = this.buckets.get(key);
    if (b) {
      // Most recently used last.
      this.buckets.delete(key);
      this.buckets.set(key, b);
    } else {
      if (this.buckets.size >= this.opts.maxKeys) this.evictRefilled(nowMs);
      if (this.buckets.size < this.opts.maxKeys) {
        b = { tokens: this.opts.burst, atMs: nowMs };
        this.buckets.set(key, b);
      } else {
        b = this.overflow ??= { tokens: this.opts.burst, atMs: nowMs };
      }
    }
    const elapsed = Math.max(0, nowMs - b.atMs);
    b.tokens = Math.min(this.opts.burst, b.tokens + (elapsed * this.opts.ratePerSec) / 1000);
    b.atMs = nowMs;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Peer buckets held (at most maxKeys; the overflow bucket is not counted). */
  get trackedKeys(): number {
    return this.buckets.size;
  }

  /** Forget least recently used buckets that have refilled completely. */
  private evictRefilled(nowMs: number): void {
    for (const [key, b] of this.buckets) {
      if (this.buckets.size < this.opts.maxKeys) return;
      const tokens = b.tokens + (Math.max(0, nowMs - b.atMs) * this.opts.ratePerSec) / 1000;
      if (tokens < this.opts.burst) return; // the LRU one is still refilling: so are most others
      this.buckets.delete(key);
    }
  }
}
