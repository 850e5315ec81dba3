/**
 * Guarantee: bpffs pins removed under a running daemon are made again from the daemon's own map
 * fds within one GC tick (log pins_restored), so enforcement never changes and a later restart
 * finds the same maps with the live entries in them (no pair re-authenticates, nothing dropped).
 * A pin that cannot be made again is logged as pins_lost on every tick (fail loudly).
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idOf, startFaultCluster, unearnedEntries, waitFor, type FaultCluster } from './harness.js';

describe('bpffs pins removed under a running daemon', () => {
  let env: FaultCluster | undefined;

  beforeAll(async () => {
    env = await startFaultCluster('fpin', {
      rules: [{ name: 'web-to-db', from: idOf('web'), to: idOf('db') }],
    });
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('pins the maps again, keeps enforcing, and a restart keeps the live entries', async () => {
    const { cluster } = env!;
    expect((await cluster.connect('web', 'db', 8080, 8000)).ok).toBe(true);
    const pinDir = cluster.pinDir('node-a');
    const pins = readdirSync(pinDir).sort();
    expect(pins).toContain('ma_auth');
    for (const f of pins) rmSync(join(pinDir, f));
    expect(readdirSync(pinDir)).toEqual([]);

    await waitFor(() => cluster.logs('node-a', 'pins_restored').length > 0, 10_000, 'pins restored');
    expect(readdirSync(pinDir).sort()).toEqual(pins);
    expect(cluster.logs('node-a', 'pins_lost')).toEqual([]);
    const before = cluster.counters('node-a');
    expect((await cluster.connect('web', 'db', 8080, 3000)).ok).toBe(true);

    // The re-made pins are the live maps: a crash and restart finds the entry.
    await cluster.stop('node-a', 'SIGKILL');
    await cluster.start('node-a');
    expect(cluster.logs('node-a', 'entries_restored')[0]?.['count']).toBe(1);
    expect((await cluster.connect('web', 'db', 8080, 3000)).ok).toBe(true);
    const after = cluster.counters('node-a');
    expect(after['drop_auth_missing']).toBe(before['drop_auth_missing']);
    expect(after['signal_sent']).toBe(before['signal_sent']);
    await expect.poll(() => unearnedEntries(cluster, 'node-a'), { timeout: 5_000 }).toEqual([]);
  }, 60_000);
});
