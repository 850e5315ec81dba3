/**
 * auth.preauthenticate: pairs the policy implies are authenticated at start-up, so the first
 * connection of a required pair loses no packet.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

describe('pre-authentication of policy-implied pairs', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    env = await startDemoCluster('pre', {
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'api-to-cache', from: id('api'), to: id('cache') },
      ],
      preauthenticate: true,
      // node-b first: node-a (the lower name) initiates, and its peer must be up.
      startOrder: ['node-b', 'node-a'],
    });
    cluster = env.cluster;
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('writes entries for every required pair before any packet, on both nodes, with one handshake each', async () => {
    await expect.poll(() => cluster.authEntries('node-a').length, { timeout: 10_000 }).toBe(2);
    await expect.poll(() => cluster.authEntries('node-b').length, { timeout: 10_000 }).toBe(2);
    expect(cluster.logs('node-a', 'preauth_queued')[0]).toMatchObject({ pairs: 2, queued: 2 });
    expect(cluster.logs('node-b', 'preauth_queued')[0]).toMatchObject({ pairs: 0 });
    await expect
      .poll(() => cluster.logs('node-a', 'auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(2);
    // Checked once node-b's log has got as far as its side of both handshakes.
    await expect
      .poll(() => cluster.logs('node-b', 'server_auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(2);
    expect(cluster.logs('node-b', 'auth_succeeded')).toHaveLength(0);
    expect(cluster.counters('node-a')['signal_sent']).toBe(0);
  });

  it('lets the first connection of a required pair through without a drop', async () => {
    const before = cluster.counters('node-a');
    const r = await cluster.connect('web', 'db', 8080, 5000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    expect(r.ms).toBeLessThan(500);
    const after = cluster.counters('node-a');
    expect(after['drop_auth_missing']).toBe(before['drop_auth_missing']);
    expect(after['signal_sent']).toBe(before['signal_sent']);
    expect(after['pass_authenticated']!).toBeGreaterThan(before['pass_authenticated']!);
  });
});
