/**
 * Two nodes in network namespaces, one meshauthd per node, real BPF on the underlay link, real
 * TLS handshakes with the embedded dev CA. Kernel counters and auth maps are read with bpftool.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { AuditStore } from '../../src/audit/index.js';
import { startImpostor } from './impostor.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

describe('two nodes, one meshauthd each', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    env = await startDemoCluster('e2e', {
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'web-to-cache', from: id('web'), to: id('cache') },
      ],
      serve: ['db', 'cache', 'web'],
    });
    cluster = env.cluster;
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('drops the first SYN of a required pair, authenticates once, writes entries on both nodes, then connects', async () => {
    const before = cluster.counters('node-a');
    const t0 = Date.now();
    const r = await cluster.connect('web', 'db', 8080, 8000);
    const elapsed = Date.now() - t0;
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    const after = cluster.counters('node-a');
    expect(after['drop_auth_missing']! - before['drop_auth_missing']!).toBeGreaterThanOrEqual(1);
    // One signal per 250 ms throttle window of the pair: exactly one when the handshake beats the
    // first window, one more per window a loaded machine makes it wait (the retransmitted SYNs).
    const signals = after['signal_sent']! - before['signal_sent']!;
    expect(signals).toBeGreaterThanOrEqual(1);
    expect(signals).toBeLessThanOrEqual(Math.ceil(elapsed / 250));
    expect(after['pass_authenticated']!).toBeGreaterThan(before['pass_authenticated']!);
    // One handshake: node-a was the client, node-b the server.
    await expect
      .poll(() => cluster.logs('node-a', 'auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(1);
    await expect
      .poll(() => cluster.logs('node-b', 'server_auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(1);
    // Checked once node-b's log has got as far as its side of the handshake.
    expect(cluster.logs('node-b', 'auth_succeeded')).toHaveLength(0);
    // Entries on both nodes, with the same expiry horizon.
    expect(cluster.authEntries('node-a')).toHaveLength(1);
    expect(cluster.authEntries('node-b')).toHaveLength(1);
    // node-b saw the SYN only after authentication: no drops there.
    expect(cluster.counters('node-b')['drop_auth_missing']).toBe(0);
    // A second connection is not delayed and causes no new signal.
    const again = await cluster.connect('web', 'db', 8080, 2000);
    expect(again.ok).toBe(true);
    expect(cluster.counters('node-a')['signal_sent']).toBe(after['signal_sent']);
  });

  it('lets a pair that policy does not cover connect with no signal and no handshake', async () => {
    const before = cluster.counters('node-a');
    const r = await cluster.connect('api', 'cache', 8080, 2000);
    expect(r).toMatchObject({ ok: true, reply: 'ok cache' });
    const after = cluster.counters('node-a');
    expect(after['signal_sent']).toBe(before['signal_sent']);
    expect(after['pass_no_policy']!).toBeGreaterThan(before['pass_no_policy']!);
    await expect
      .poll(() => cluster.logs('node-a', 'auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(1);
  });

  it('keeps live entries working while the peer daemon is killed and restarted', async () => {
    const before = { a: cluster.counters('node-a'), b: cluster.counters('node-b') };
    await cluster.stop('node-b', 'SIGKILL');
    expect((await cluster.connect('web', 'db', 8080, 2000)).ok).toBe(true);
    await cluster.start('node-b');
    expect((await cluster.connect('web', 'db', 8080, 2000)).ok).toBe(true);
    const after = { a: cluster.counters('node-a'), b: cluster.counters('node-b') };
    for (const n of ['a', 'b'] as const) {
      expect(after[n]['drop_auth_missing']).toBe(before[n]['drop_auth_missing']);
      expect(after[n]['drop_auth_expired']).toBe(before[n]['drop_auth_expired']);
    }
    expect(cluster.authEntries('node-b')).toHaveLength(1);
    expect(cluster.logs('node-b', 'entries_restored')[0]).toMatchObject({ count: 1 });
  });

  it('never writes an entry for a peer with an untrusted CA, the wrong SPIFFE ID or an unknown critical extension, and throttles the flood', async () => {
    await cluster.stop('node-b', 'SIGTERM');
    const reasons = {
      'untrusted-ca': 'svid-untrusted',
      'wrong-id': 'spiffe-id-mismatch',
      'critical-extension': 'svid-unhandled-critical-extension',
    } as const;
    for (const kind of ['untrusted-ca', 'wrong-id', 'critical-extension'] as const) {
      const impostor = await startImpostor(cluster.topo, cluster, { node: 'node-b', kind });
      try {
        const drops0 = cluster.counters('node-a');
        const t0 = Date.now();
        const sent = await cluster.flood('web', 'cache', 1000);
        const elapsed = Date.now() - t0;
        const r = await cluster.connect('web', 'cache', 8080, 1500);
        expect(r.ok).toBe(false);
        const drops1 = cluster.counters('node-a');
        // Thousands of dropped packets, at most one signal per 250 ms window (+1 for the edge).
        expect(drops1['drop_auth_missing']! - drops0['drop_auth_missing']!).toBeGreaterThan(100);
        expect(sent).toBeGreaterThan(100);
        const windows = Math.ceil((elapsed + 1500) / 250) + 1;
        expect(drops1['signal_sent']! - drops0['signal_sent']!).toBeLessThanOrEqual(windows);
        expect(drops1['signal_throttled']! - drops0['signal_throttled']!).toBeGreaterThan(50);
        const want = reasons[kind];
        // After the earlier impostors the pair is in capped exponential backoff (retryMax 30 s).
        await expect
          .poll(() => cluster.logs('node-a', 'auth_failed').map((l) => l['reason']), { timeout: 35_000 })
          .toContain(want);
        // The reason is in node-a's audit trail too (written by its audit thread).
        await expect
          .poll(
            () => {
              const store = AuditStore.open({
                path: join(cluster.stateDir('node-a'), 'audit.db'),
                readonly: true,
              });
              try {
                return store.query({ reason: want }).length;
              } finally {
                store.close();
              }
            },
            { timeout: 5000 },
          )
          .toBeGreaterThan(0);
        expect(cluster.authEntries('node-a').filter((e) => e.remoteNode !== 0)).toHaveLength(1); // only web->db
      } finally {
        await impostor.stop();
      }
    }
    await cluster.start('node-b');
    // The real daemon is back. The pair is in capped exponential backoff after seven failures
    // (retryMax 30 s), so it authenticates on its next retry; TCP keeps retransmitting meanwhile.
    const r = await cluster.connect('web', 'cache', 8080, 45_000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok cache' });
    expect(cluster.authEntries('node-a')).toHaveLength(2);
  }, 180_000);
});
