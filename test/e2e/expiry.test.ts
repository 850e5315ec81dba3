/**
 * Short entry lifetimes: entries expire in the kernel, the next packet re-authenticates; and a
 * daemon stopped with SIGTERM leaves the datapath enforcing with its pinned maps.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

describe('entry expiry and graceful shutdown', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    env = await startDemoCluster('exp', {
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'web-to-cache', from: id('web'), to: id('cache') },
      ],
      maxEntryTtl: '3s',
      reauthAt: 0,
    });
    cluster = env.cluster;
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('expires the entry after the capped lifetime and re-authenticates on the next packet', async () => {
    expect(await cluster.connect('web', 'db', 8080, 8000)).toMatchObject({ ok: true });
    await expect
      .poll(() => cluster.logs('node-a', 'auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(1);
    // The entry lives 3 s; GC (every 1 s here) removes it once expired and records why. Wait for
    // that record, so the next connection cannot re-authenticate first and leave GC nothing
    // expired to find.
    const gcReasons = () => cluster.logs('node-a', 'entry_gc').map((l) => l['reason']);
    await expect.poll(gcReasons, { timeout: 10_000, interval: 100 }).toContain('expired');
    const before = cluster.counters('node-a');
    const r = await cluster.connect('web', 'db', 8080, 8000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });
    const after = cluster.counters('node-a');
    const drops =
      after['drop_auth_expired']! -
      before['drop_auth_expired']! +
      (after['drop_auth_missing']! - before['drop_auth_missing']!);
    expect(drops).toBeGreaterThanOrEqual(1);
    expect(after['signal_sent']! - before['signal_sent']!).toBeGreaterThanOrEqual(1);
    // The entry is written before its log line is; the line reaches the test's log reader a little later.
    await expect
      .poll(() => cluster.logs('node-a', 'auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(2);
  });

  it('keeps enforcing after SIGTERM: maps stay pinned, programs stay attached', async () => {
    expect((await cluster.connect('web', 'db', 8080, 8000)).ok).toBe(true);
    expect(await cluster.stop('node-a', 'SIGTERM')).toBe(0);
    expect((await cluster.connect('web', 'db', 8080, 2000)).ok).toBe(true); // live entry still passes
    const before = cluster.counters('node-a');
    expect((await cluster.connect('web', 'cache', 8080, 1500)).ok).toBe(false); // no daemon to authenticate
    const after = cluster.counters('node-a');
    expect(after['drop_auth_missing']!).toBeGreaterThan(before['drop_auth_missing']!);
  });
});
