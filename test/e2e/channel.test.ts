/**
 * Two nodes in network namespaces with both daemons in auth.mode channel: one node channel between
 * the daemons (node SVIDs from the dev CA, RFC 9261 identity proofs), real BPF, real drops.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { AuditStore } from '../../src/audit/index.js';
import { run } from '../helpers/netns.js';
import { startImpostor } from './impostor.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

function audit(cluster: Cluster, node: string, type: string): Array<Record<string, unknown>> {
  const store = AuditStore.open({ path: join(cluster.stateDir(node), 'audit.db'), readonly: true });
  try {
    return store
      .query({})
      .filter((e) => e.type === type)
      .map((e) => ({ ...e, ...(e.details ?? {}) }) as Record<string, unknown>);
  } finally {
    store.close();
  }
}

describe('two nodes in channel mode', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    env = await startDemoCluster('e2ech', {
      authMode: 'channel',
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'web-to-cache', from: id('web'), to: id('cache') },
        { name: 'api-to-cache', from: id('api'), to: id('cache') },
      ],
      serve: ['db', 'cache'],
    });
    cluster = env.cluster;
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('drops the first SYN, writes the entry on both nodes from channel proofs, then connects', async () => {
    const before = cluster.counters('node-a');
    const r = await cluster.connect('web', 'db', 8080, 8000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    const after = cluster.counters('node-a');
    expect(after['drop_auth_missing']! - before['drop_auth_missing']!).toBeGreaterThanOrEqual(1);
    await expect
      .poll(() => cluster.logs('node-a', 'auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(1);
    await expect.poll(() => cluster.logs('node-b', 'server_auth_succeeded').length).toBe(1);
    expect(cluster.authEntries('node-a')).toHaveLength(1);
    expect(cluster.authEntries('node-b')).toHaveLength(1);
    // One channel, the same id on both nodes, and the audit says which proofs were used.
    const open = cluster.logs('node-a', 'channel_open');
    expect(open).toHaveLength(1);
    const channelId = open[0]!['channel'];
    expect(cluster.logs('node-b', 'channel_open').map((l) => l['channel'])).toEqual([channelId]);
    await expect
      .poll(() =>
        audit(cluster, 'node-a', 'handshake-succeeded').map((e) => (e['channel'] as { id?: string })?.id),
      )
      .toEqual([channelId]);
    const a = audit(cluster, 'node-a', 'handshake-succeeded')[0]!;
    expect(a['channel']).toMatchObject({
      peerNode: 'node-b',
      localProof: { spiffeId: id('web') },
      remoteProof: { spiffeId: id('db') },
    });
    await expect
      .poll(() =>
        audit(cluster, 'node-b', 'handshake-succeeded').map((e) => (e['channel'] as { id?: string })?.id),
      )
      .toEqual([channelId]);
  });

  it('authenticates a second pair over the same channel', async () => {
    const r = await cluster.connect('web', 'cache', 8080, 8000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok cache' });
    expect(cluster.logs('node-a', 'channel_open')).toHaveLength(1);
    expect(cluster.authEntries('node-a')).toHaveLength(2);
    await expect.poll(() => cluster.authEntries('node-b').length).toBe(2);
  });

  it('falls back to the per-pair handshake with a peer that has no channel, and rejects an impostor there', async () => {
    await cluster.stop('node-b', 'SIGTERM');
    const impostor = await startImpostor(cluster.topo, cluster, { node: 'node-b', kind: 'untrusted-ca' });
    try {
      const r = await cluster.connect('api', 'cache', 8080, 1500);
      expect(r.ok).toBe(false);
      await expect
        .poll(() => cluster.logs('node-a', 'auth_failed').map((l) => l['reason']), { timeout: 10_000 })
        .toContain('svid-untrusted');
      expect(cluster.authEntries('node-a')).toHaveLength(2);
    } finally {
      await impostor.stop();
    }
  }, 60_000);
});

describe('channel mode over WireGuard', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    env = await startDemoCluster('e2echwg', {
      authMode: 'channel',
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'api-to-cache', from: id('api'), to: id('cache') },
      ],
      wireguard: {},
    });
    cluster = env.cluster;
  }, 90_000);

  afterAll(async () => {
    await env?.teardown();
  });

  it('binds the channel to both WireGuard keys and authenticates through it', async () => {
    const r = await cluster.connect('web', 'db', 8080, 8000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    expect(cluster.logs('node-a', 'channel_open')).toHaveLength(1);
    await expect.poll(() => cluster.authEntries('node-b').length).toBe(1);
    expect(audit(cluster, 'node-a', 'handshake-succeeded')[0]!['channel']).toMatchObject({
      peerNode: 'node-b',
    });
  });

  it('refuses the channel, and writes no entry, when the peer presents a WireGuard key other than the inventory holds', async () => {
    await cluster.stop('node-b', 'SIGTERM');
    const keyFile = join(cluster.stateDir('node-b'), 'wireguard', 'private.key');
    writeFileSync(keyFile, `${run('wg', ['genkey']).trim()}\n`, { mode: 0o600 });
    await cluster.start('node-b');
    cluster.cli('node-a', ['flush', '--all']);
    const r = await cluster.connect('api', 'cache', 8080, 2500);
    expect(r.ok).toBe(false);
    await expect
      .poll(() => cluster.logs('node-a', 'channel_refused').map((l) => l['reason']), { timeout: 5000 })
      .toContain('wireguard-key-mismatch');
    // The per-pair handshake it falls back to refuses the same key.
    await expect
      .poll(() => cluster.logs('node-a', 'auth_failed').map((l) => l['reason']), { timeout: 5000 })
      .toContain('wireguard-key-mismatch');
    expect(cluster.authEntries('node-a')).toHaveLength(0);
  }, 60_000);
});

describe('mixed cluster: one node in channel mode, one per-pair', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;

  beforeAll(async () => {
    env = await startDemoCluster('e2echmix', {
      authMode: (node) => (node === 'node-a' ? 'channel' : 'per-pair'),
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'cache-to-api', from: id('cache'), to: id('api') },
      ],
      serve: ['db', 'api'],
    });
    cluster = env.cluster;
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('authenticates both ways with the per-pair handshake and writes entries on both nodes', async () => {
    // node-a (channel mode) initiates: no channel listener on node-b, so the handshake.
    const r = await cluster.connect('web', 'db', 8080, 8000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    // node-b (per-pair) initiates toward node-a, whose handshake server still serves it.
    const r2 = await cluster.connect('cache', 'api', 8080, 8000);
    expect(r2, summarize(cluster.logs('node-b'))).toMatchObject({ ok: true, reply: 'ok api' });
    expect(cluster.authEntries('node-a')).toHaveLength(2);
    expect(cluster.authEntries('node-b')).toHaveLength(2);
    expect(cluster.logs('node-a', 'channel_open')).toHaveLength(0);
    expect(audit(cluster, 'node-a', 'handshake-succeeded').every((e) => e['channel'] === undefined)).toBe(
      true,
    );
  });
});
