/**
 * datapath.synReplay between two nodes: the first SYN of a cold pair, dropped on the client's node,
 * is sent again by that node's daemon once both entries exist. With the SYN retransmission timeout
 * of unauthenticated pairs at its longest (datapath.synRto 1s), the connection completes long
 * before the kernel would retransmit when replay is on, and only after it when replay is off.
 * The order-of-magnitude contrast is the only timing relied on; counters and logs carry the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

const RULES = [{ name: 'web-to-db', from: id('web'), to: id('db') }];

describe.each([
  { mode: 'per-pair' as const, prefix: 'e2esr', wireguard: false },
  { mode: 'channel' as const, prefix: 'e2esrch', wireguard: false },
  // The programs on the WireGuard interface: the replayed SYN is routed into the tunnel.
  { mode: 'channel' as const, prefix: 'e2esrwg', wireguard: true },
])('SYN replay, auth.mode $mode, WireGuard $wireguard', ({ mode, prefix, wireguard }) => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    env = await startDemoCluster(prefix, {
      rules: RULES,
      serve: ['db'],
      synRto: '1s',
      authMode: mode,
      ...(wireguard ? { wireguard: { strict: true } } : {}),
    });
    cluster = env.cluster;
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('replays the dropped SYN once both entries exist: the first connection does not wait for the retransmission', async () => {
    const before = cluster.counters('node-a');
    const t0 = Date.now();
    const r = await cluster.connect('web', 'db', 8080, 5000);
    const elapsed = Date.now() - t0;
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    const after = cluster.counters('node-a');
    // The SYN was dropped once on node-a and the pair signalled once; no retransmission was needed.
    expect(after['drop_auth_missing']! - before['drop_auth_missing']!).toBe(1);
    // The replayed SYN can complete the connection before the replay's log line reaches the reader.
    await expect.poll(() => cluster.logs('node-a', 'syn_replayed').length).toBe(1);
    // The replayed SYN crossed node-a's egress program as an authenticated packet, and node-b
    // passed it in (no drop there).
    expect(after['pass_authenticated']!).toBeGreaterThan(before['pass_authenticated']!);
    expect(cluster.counters('node-b')['drop_auth_missing']).toBe(0);
    expect(elapsed).toBeLessThan(1000);
  });
});

describe('SYN replay off', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    env = await startDemoCluster('e2esroff', { rules: RULES, serve: ['db'], synRto: '1s', synReplay: false });
    cluster = env.cluster;
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('the first connection waits for the kernel retransmission', async () => {
    const t0 = Date.now();
    const r = await cluster.connect('web', 'db', 8080, 5000);
    const elapsed = Date.now() - t0;
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    expect(cluster.logs('node-a', 'syn_replayed')).toHaveLength(0);
    expect(elapsed).toBeGreaterThanOrEqual(1000);
  });
});
