import { LRUCache } from 'lru-cache';
import type { AuthKey, AuthMap, AuthValue } from '../datapath/index.js';
import { systemClock } from '../time.js';
import { pairKey } from './pair.js';
import type { EntryTrust } from './trust.js';

/** Who wrote an entry: this daemon as handshake client, as server, or found in the pinned map. */
export type EntryOrigin = 'client' | 'server' | 'restored';

export interface CachedEntry {
  key: AuthKey;
  /** Wall-clock expiry (epoch ms) the handshake earned: the certificates' notAfter, capped. */
  expiresAtMs: number;
  /** When this daemon wrote (or restored) the entry, wall clock (epoch ms). */
  writtenAtMs: number;
  /** Expiry as the kernel holds it, in the map's clock (AuthMap.clockNowMs, CLOCK_BOOTTIME ms). */
  expiresAtClockMs: number;
  /** When the entry was written (or restored), in the map's clock. */
  writtenAtClockMs: number;
  origin: EntryOrigin;
  /** What the authentication relied on (trust anchors, chains); absent for restored entries. */
  trust?: EntryTrust;
}

/** Why the mirror was corrected from the kernel map. */
export type MirrorRepairReason =
  /** The mirror had an entry the kernel map no longer has (removed by another tool, map reset). */
  | 'kernel-missing'
  /** The kernel map has an entry the mirror did not know (written by another tool, evicted from the LRU). */
  | 'kernel-extra'
  /** Both have the entry with different expiries (rewritten behind the daemon's back). */
  | 'expiry-differs'
  /** The mirror said live, the kernel's clock says expired (clocks disagree). */
  | 'kernel-expired';

/** Within this, two expiries in the map's clock are the same (ns → ms rounding). */
const SAME_EXPIRY_MS = 1;

/**
 * Write-through cache over the kernel auth map. The kernel map is the truth for the datapath;
 * this mirror remembers when, how and on what trust each entry was earned (for re-authentication,
 * GC and revocation). Liveness is judged in the kernel's clock (and the wall clock, which the
 * certificates' notAfter is in): an entry is live only while both say so. checkLive() and
 * reconcile() compare the mirror with the kernel and repair any difference, reporting each
 * repair through `onRepair`.
 */
export class AuthCache {
  private readonly mirror: LRUCache<string, CachedEntry>;
  private readonly now: () => number;
  private readonly onRepair: ((reason: MirrorRepairReason, key: AuthKey) => void) | undefined;

  constructor(
    private readonly map: AuthMap,
    opts: {
      maxEntries?: number;
      /** Wall clock, epoch ms. */
      now?: () => number;
      onRepair?: (reason: MirrorRepairReason, key: AuthKey) => void;
    } = {},
  ) {
    this.now = opts.now ?? systemClock.now;
    this.onRepair = opts.onRepair;
    // The LRU bound protects memory; the kernel map has its own max_entries. An entry pushed out of
    // the mirror is still in the kernel: checkLive()/reconcile() adopt it again ('kernel-extra').
    this.mirror = new LRUCache({ max: opts.maxEntries ?? 65_536 });
  }

  /** Reloads the mirror from the kernel map (start-up after a restart). Returns the entry count. */
  restore(): number {
    this.mirror.clear();
    let n = 0;
    for (const [key, expiresAtClockMs] of this.map.expiriesClockMs()) {
      this.adopt(key, expiresAtClockMs);
      n++;
    }
    return n;
  }

  /**
   * Writes the kernel map first, then reads the expiry back: the mirror only reflects what the
   * kernel holds, in the kernel's clock.
   */
  set(
    key: AuthKey,
    value: AuthValue,
    origin: Exclude<EntryOrigin, 'restored'>,
    trust?: EntryTrust,
  ): CachedEntry {
    this.map.update(key, value);
    const clockNow = this.map.clockNowMs();
    const expiresAtClockMs = this.map.expiryClockMs(key);
    if (expiresAtClockMs === undefined) {
      this.mirror.delete(pairKey(key));
      throw new Error('write auth entry: the kernel map does not hold the entry just written');
    }
    const entry: CachedEntry = {
      key,
      expiresAtMs: value.expiresAtMs,
      writtenAtMs: this.now(),
      expiresAtClockMs,
      writtenAtClockMs: clockNow,
      origin,
      ...(trust ? { trust } : {}),
    };
    this.mirror.set(pairKey(key), entry);
    return entry;
  }

  get(key: AuthKey): CachedEntry | undefined {
    return this.mirror.get(pairKey(key));
  }

  /** Now in the kernel map's clock (ms). */
  clockNowMs(): number {
    return this.map.clockNowMs();
  }

  /** True when the mirror holds the entry and neither clock says it expired (no syscall). */
  isLive(key: AuthKey): boolean {
    const e = this.get(key);
    return e !== undefined && !this.isExpired(e);
  }

  /** True when the kernel's clock or the wall clock (`wallNowMs`, default now) says the entry expired. */
  isExpired(e: CachedEntry, wallNowMs: number = this.now()): boolean {
    return e.expiresAtClockMs <= this.map.clockNowMs() || e.expiresAtMs <= wallNowMs;
  }

  /**
   * Is the pair live in the kernel? Reads the kernel entry, repairs the mirror where the two
   * disagree, and answers from the kernel (in its clock), bounded by the earned wall-clock expiry.
   */
  checkLive(key: AuthKey): boolean {
    const id = pairKey(key);
    const mirrored = this.mirror.get(id);
    const kernel = this.map.expiryClockMs(key);
    const clockNow = this.map.clockNowMs();
    if (kernel === undefined) {
      if (mirrored) {
        this.mirror.delete(id);
        this.repaired('kernel-missing', key);
      }
      return false;
    }
    if (!mirrored) {
      const adopted = this.adopt(key, kernel);
      this.repaired('kernel-extra', key);
      return !this.isExpired(adopted);
    }
    if (Math.abs(mirrored.expiresAtClockMs - kernel) > SAME_EXPIRY_MS) {
      const wasLive = !this.isExpired(mirrored);
      this.takeKernelExpiry(mirrored, kernel, clockNow);
      this.repaired(wasLive && kernel <= clockNow ? 'kernel-expired' : 'expiry-differs', key);
    }
    return !this.isExpired(mirrored);
  }

  /**
   * Full comparison of mirror and kernel map: entries only the mirror has are dropped, entries
   * only the kernel has are adopted, expiries are taken from the kernel. Returns repairs by reason.
   */
  reconcile(): Partial<Record<MirrorRepairReason, number>> {
    const out: Partial<Record<MirrorRepairReason, number>> = {};
    const count = (r: MirrorRepairReason, key: AuthKey): void => {
      out[r] = (out[r] ?? 0) + 1;
      this.repaired(r, key);
    };
    const seen = new Set<string>();
    // One batched read of the whole map (see AuthMap.expiriesClockMs), not a lookup per key.
    for (const [key, kernel] of this.map.expiriesClockMs()) {
      const id = pairKey(key);
      seen.add(id);
      const mirrored = this.mirror.peek(id);
      if (!mirrored) {
        this.adopt(key, kernel);
        count('kernel-extra', key);
      } else if (Math.abs(mirrored.expiresAtClockMs - kernel) > SAME_EXPIRY_MS) {
        this.takeKernelExpiry(mirrored, kernel, this.map.clockNowMs());
        count('expiry-differs', key);
      }
    }
    for (const [id, e] of [...this.mirror.entries()]) {
      if (seen.has(id)) continue;
      if (this.map.expiryClockMs(e.key) !== undefined) continue; // written while iterating
      this.mirror.delete(id);
      count('kernel-missing', e.key);
    }
    return out;
  }

  /** Removes from the kernel and the mirror. Returns false when the kernel had no such entry. */
  delete(key: AuthKey): boolean {
    this.mirror.delete(pairKey(key));
    return this.map.delete(key);
  }

  entries(): CachedEntry[] {
    return [...this.mirror.values()];
  }

  get size(): number {
    return this.mirror.size;
  }

  /** Takes a kernel entry (with its expiry as just read) into the mirror as 'restored' (no trust provenance known). */
  private adopt(key: AuthKey, expiresAtClockMs: number): CachedEntry {
    const clockNow = this.map.clockNowMs();
    const wallNow = this.now();
    const entry: CachedEntry = {
      key,
      expiresAtMs: wallNow + (expiresAtClockMs - clockNow),
      writtenAtMs: wallNow,
      expiresAtClockMs,
      writtenAtClockMs: clockNow,
      origin: 'restored',
    };
    this.mirror.set(pairKey(key), entry);
    return entry;
  }

  /**
   * The kernel's expiry wins. An earned entry keeps its wall-clock bound (the certificates'
   * notAfter); a restored one has no other source than the kernel.
   */
  private takeKernelExpiry(e: CachedEntry, kernel: number, clockNow: number): void {
    e.expiresAtClockMs = kernel;
    if (e.origin === 'restored') e.expiresAtMs = this.now() + (kernel - clockNow);
  }

  private repaired(reason: MirrorRepairReason, key: AuthKey): void {
    try {
      this.onRepair?.(reason, key);
    } catch {
      // counting must never break the auth path
    }
  }
}
