import { LRUCache } from 'lru-cache';
import type { AuthKey, AuthMap, AuthValue } from '../datapath/index.js';
import { pairKey } from './pair.js';

/** Who wrote an entry: this daemon as handshake client, as server, or found in the pinned map. */
export type EntryOrigin = 'client' | 'server' | 'restored';

export interface CachedEntry {
  key: AuthKey;
  expiresAtMs: number;
  /** When this daemon wrote (or restored) the entry. */
  writtenAtMs: number;
  origin: EntryOrigin;
}

/**
 * Write-through cache over the kernel auth map. The kernel map is the truth for the datapath;
 * this mirror answers "is this pair live?" without a syscall and remembers when and how each
 * entry was earned (for re-authentication and GC). It is rebuilt from the pinned map by restore().
 */
export class AuthCache {
  private readonly mirror: LRUCache<string, CachedEntry>;

  constructor(
    private readonly map: AuthMap,
    opts: { maxEntries?: number; now?: () => number } = {},
  ) {
    this.now = opts.now ?? Date.now;
    // The LRU bound protects memory; the kernel map has its own max_entries. An entry pushed out of
    // the mirror is still in the kernel and comes back on the next restore().
    this.mirror = new LRUCache({ max: opts.maxEntries ?? 65_536 });
  }

  private readonly now: () => number;

  /** Reloads the mirror from the kernel map (start-up after a restart). Returns the entry count. */
  restore(): number {
    this.mirror.clear();
    const now = this.now();
    let n = 0;
    for (const [key, value] of this.map.entries()) {
      this.mirror.set(pairKey(key), {
        key,
        expiresAtMs: value.expiresAtMs,
        writtenAtMs: now,
        origin: 'restored',
      });
      n++;
    }
    return n;
  }

  /** Writes the kernel map first; the mirror only reflects what the kernel accepted. */
  set(key: AuthKey, value: AuthValue, origin: Exclude<EntryOrigin, 'restored'>): CachedEntry {
    this.map.update(key, value);
    const entry: CachedEntry = { key, expiresAtMs: value.expiresAtMs, writtenAtMs: this.now(), origin };
    this.mirror.set(pairKey(key), entry);
    return entry;
  }

  get(key: AuthKey): CachedEntry | undefined {
    return this.mirror.get(pairKey(key));
  }

  /** True when an entry exists and has not expired. */
  isLive(key: AuthKey): boolean {
    const e = this.get(key);
    return e !== undefined && e.expiresAtMs > this.now();
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
}
