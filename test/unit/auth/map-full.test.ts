import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import { AuthCache, AuthManager, AuthReporter, type PairResolver } from '../../../src/auth/index.js';
import type { AuthKey, AuthValue } from '../../../src/datapath/types.js';
import { silentLogger } from '../../../src/log.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { ManualSignals, MemoryAuthMap } from '../../helpers/fakes.js';

/** A hash map of `capacity` slots that refuses a new key when full, as the kernel does (E2BIG). */
class BoundedAuthMap extends MemoryAuthMap {
  constructor(
    private readonly capacity: number,
    now: () => number,
  ) {
    super(now);
  }
  override update(key: AuthKey, value: AuthValue): void {
    if (this.lookup(key) === undefined && this.data.size >= this.capacity) {
      throw Object.assign(new Error('update ma_auth: E2BIG'), { errno: constants.errno.E2BIG });
    }
    super.update(key, value);
  }
}

const ids = Array.from({ length: 10 }, (_, i) => `spiffe://demo.local/ns/demo/sa/w${i}`);
const resolver: PairResolver = {
  spiffeIdOf: (n) => ids[n - 1],
  numericIdFor: (s) => ids.indexOf(s) + 1,
  nodeNameOf: (n) => (n === 7 ? 'node-b' : undefined),
  nodeIdOf: (name) => (name === 'node-b' ? 7 : undefined),
  nodeEndpoint: () => ({ address: '192.0.2.2', port: 4250 }),
  pairRequired: () => true,
};

function setup(onMapFull: (map: BoundedAuthMap) => number) {
  const clock = new FakeClock(Date.now());
  const map = new BoundedAuthMap(2, () => clock.now());
  const cache = new AuthCache(map, { now: () => clock.now() });
  const audit = new MemoryAuditSink();
  let gcPasses = 0;
  const manager = new AuthManager({
    cache,
    resolver,
    authenticator: {
      authenticate: () => Promise.resolve({ expiresAtMs: clock.now() + 60_000, durationMs: 1 }),
    },
    reporter: new AuthReporter({ audit, logger: silentLogger() }),
    logger: silentLogger(),
    clock,
    onMapFull: () => (gcPasses++, onMapFull(map)),
    options: { maxConcurrent: 1, queueSize: 10, retryBaseMs: 1000, retryMaxMs: 1000, reauthAt: 0 },
  });
  const signals = new ManualSignals();
  manager.start(signals);
  return { map, audit, manager, signals, gcPasses: () => gcPasses };
}

const pair = (local: number) => ({ localId: local, remoteId: 10, remoteNode: 7 });

describe('AuthManager with a full auth map', () => {
  it('fails closed with reason auth-map-full after one GC pass that frees nothing', async () => {
    const t = setup(() => 0);
    for (const i of [1, 2, 3]) t.signals.emit(pair(i));
    await t.manager.idle();
    expect(t.map.data.size).toBe(2);
    expect(t.gcPasses()).toBe(1);
    const failed = t.audit.events.filter((e) => e.type === 'handshake-failed');
    expect(failed.map((e) => [e.localId, e.reason])).toEqual([[ids[2], 'auth-map-full']]);
    expect(t.map.lookup({ ...pair(3), authType: 1 })).toBeUndefined();
    t.signals.close();
    await t.manager.close();
  });

  it('writes the entry when the GC pass under pressure freed a slot', async () => {
    const t = setup((map) => (map.delete({ ...pair(1), authType: 1 }) ? 1 : 0));
    for (const i of [1, 2, 3]) t.signals.emit(pair(i));
    await t.manager.idle();
    expect(t.gcPasses()).toBe(1);
    expect(t.audit.events.filter((e) => e.type === 'handshake-failed')).toEqual([]);
    expect(t.map.lookup({ ...pair(3), authType: 1 })).toBeDefined();
    t.signals.close();
    await t.manager.close();
  });

  it('refuses the server-side write with reason auth-map-full', () => {
    const t = setup(() => 0);
    const write = (local: number) =>
      t.manager.onServerAuthenticated({
        localId: ids[local - 1]!,
        remoteId: ids[9]!,
        peerNode: 'node-b',
        expiresAtMs: Date.now() + 60_000,
      });
    write(1);
    write(2);
    expect(() => write(3)).toThrow(expect.objectContaining({ reason: 'auth-map-full' }));
    expect(t.map.data.size).toBe(2);
  });
});
