import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import {
  AuthCache,
  removeUnauditedEntries,
  trailKey,
  type EntryLifecycleEvent,
} from '../../../src/auth/index.js';
import type { AuthKey } from '../../../src/datapath/types.js';
import { MemoryAuthMap } from '../../helpers/fakes.js';

const ids = new Map([
  [1, 'spiffe://t.local/a'],
  [2, 'spiffe://t.local/b'],
  [3, 'spiffe://t.local/c'],
  [4, 'spiffe://t.local/d'],
]);
const key = (localId: number, remoteId: number): AuthKey => ({
  localId,
  remoteId,
  remoteNode: 7,
  authType: 1,
});
const names = (k: AuthKey) => ({
  localId: ids.get(k.localId),
  remoteId: ids.get(k.remoteId),
  node: 'node-b',
});

/**
 * Regression: meshauthd killed between the kernel write of an entry and the commit of its
 * `entry-written` audit event left a pinned entry the trail did not account for (found by
 * test/faults/kill9.test.ts); the restarted daemon kept it.
 */
describe('removeUnauditedEntries', () => {
  it('removes and records restored entries whose last lifecycle event is not entry-written', () => {
    const now = 1_000_000_000;
    const map = new MemoryAuthMap(() => now);
    for (const k of [key(1, 2), key(1, 3), key(1, 4), key(2, 4)])
      map.update(k, { expiresAtMs: now + 60_000 });
    const cache = new AuthCache(map, { now: () => now });
    expect(cache.restore()).toBe(4);
    const trail = new Map<string, EntryLifecycleEvent>([
      [trailKey(names(key(1, 2))), 'entry-written'], // accounted for
      [trailKey(names(key(1, 3))), 'entry-expired'], // the trail says it ended: this one is newer
      // key(1, 4): no event at all
      [trailKey(names(key(2, 4))), 'entry-written'],
    ]);
    const audit = new MemoryAuditSink();
    let since: number | undefined;
    const removed = removeUnauditedEntries({
      cache,
      names,
      trail: (s) => ((since = s), trail),
      audit,
      logger: pino({ level: 'silent' }),
      maxEntryTtlMs: 3_600_000,
      now: () => now,
    });
    expect(removed).toBe(2);
    expect(since).toBe(now - 3_600_000 - 60_000);
    expect([...map.entries()].map(([k]) => k).sort((a, b) => a.remoteId - b.remoteId)).toEqual([
      key(1, 2),
      key(2, 4),
    ]);
    expect(cache.size).toBe(2);
    expect(audit.events).toHaveLength(2);
    expect(audit.events.map((e) => [e.type, e.reason, e.remoteId]).sort()).toEqual([
      ['entry-removed', 'unaudited-entry', 'spiffe://t.local/c'],
      ['entry-removed', 'unaudited-entry', 'spiffe://t.local/d'],
    ]);
  });

  it('leaves entries this daemon wrote alone and reads no trail when nothing was restored', () => {
    const map = new MemoryAuthMap();
    const cache = new AuthCache(map);
    cache.set(key(1, 2), { expiresAtMs: Date.now() + 60_000 }, 'client');
    let read = false;
    const removed = removeUnauditedEntries({
      cache,
      names,
      trail: () => ((read = true), new Map()),
      audit: new MemoryAuditSink(),
      logger: pino({ level: 'silent' }),
      maxEntryTtlMs: 3_600_000,
    });
    expect(removed).toBe(0);
    expect(read).toBe(false);
    expect(cache.size).toBe(1);
  });
});
