/**
 * Two meshauthd with identities from a real SPIRE deployment: one spire-server, one spire-agent
 * per node, meshauthd authorized as a delegate on each agent's admin socket and fetching the SVIDs
 * of its node's workloads through the Delegated Identity API by their inventory selectors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { PODS } from '../../demo/topology.js';
import { SpireLab, spireBinDir } from '../helpers/spire.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

const bin = spireBinDir();
const MESHAUTHD = 'spiffe://demo.local/meshauthd';
/** Short SVID lifetime: the agent rotates at about half of it. */
const SVID_TTL_S = 40;

describe.skipIf(!bin)('meshauthd with SVIDs from SPIRE', () => {
  let spire: SpireLab | undefined;
  let env: DemoCluster | undefined;
  let cluster: Cluster;
  const entryIds = new Map<string, string>();

  beforeAll(async () => {
    spire = await SpireLab.start(bin!, {
      trustDomain: 'demo.local',
      authorizedDelegates: [MESHAUTHD],
      nodes: ['node-a', 'node-b'],
    });
    const lab = spire;
    await lab.registerDelegate(MESHAUTHD, ['node-a', 'node-b']);
    // Every demo workload but "api", which stays without a registration entry.
    for (const p of PODS.filter((p) => p.name !== 'api')) {
      entryIds.set(
        p.name,
        await lab.createEntry({
          spiffeId: p.spiffeId,
          selectors: ['k8s:ns:demo', `k8s:sa:${p.name}`],
          parentId: lab.agent(p.node).nodeId,
          x509SvidTtlS: SVID_TTL_S,
        }),
      );
    }
    env = await startDemoCluster('spire', {
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'web-to-cache', from: id('web'), to: id('cache') },
      ],
      extraConfig: (node) => ({
        identity: lab.delegatedIdentityConfig(node),
      }),
    });
    cluster = env.cluster;
  }, 120_000);

  afterAll(async () => {
    await env?.teardown();
    await spire?.cleanup();
  });

  it('authenticates a pair with SPIRE-issued SVIDs, and a workload without an entry is "no identity", not a crash', async () => {
    const r = await cluster.connect('web', 'db', 8080, 8000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    expect(cluster.authEntries('node-a')).toHaveLength(1);
    expect(cluster.authEntries('node-b')).toHaveLength(1);
    // The SVIDs came from SPIRE (the dev CA is not in use): the entry's expiry follows the SVIDs'
    // short lifetime, not handshake.maxEntryTtl (1 h).
    const entry = JSON.parse(cluster.cli('node-a', ['entries', '-o', 'json']).trim().split('\n')[0]!) as {
      remoteId: string;
      expiresAtMs: number;
    };
    expect(entry.remoteId).toBe(id('db'));
    expect(entry.expiresAtMs - Date.now()).toBeLessThanOrEqual(SVID_TTL_S * 1000);
    expect(cluster.logs('node-a', 'dev_ca_in_use')).toHaveLength(0);
    const states = cluster.logs('node-a', 'identity_source_state').map((l) => l['state']);
    expect(states).toContain('no-identity');
    expect(cluster.daemons.get('node-a')!.child.exitCode).toBeNull();
  });

  it('rotates SVIDs while traffic keeps flowing, with zero drops', async () => {
    const before = { a: cluster.counters('node-a'), b: cluster.counters('node-b') };
    const rotationsBefore = cluster.logs('node-a', 'svid_updated').length;
    const deadline = Date.now() + SVID_TTL_S * 1000 + 5_000;
    let connects = 0;
    while (Date.now() < deadline) {
      const r = await cluster.connect('web', 'db', 8080, 3000);
      expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });
      connects++;
      await new Promise((res) => setTimeout(res, 250));
    }
    const after = { a: cluster.counters('node-a'), b: cluster.counters('node-b') };
    // Rotation happened (more than one SVID per identity) ...
    expect(cluster.logs('node-a', 'svid_updated').length).toBeGreaterThan(rotationsBefore);
    // ... and not one packet of the pair was dropped meanwhile, on either node.
    for (const n of ['a', 'b'] as const) {
      expect(after[n]['drop_auth_missing']).toBe(before[n]['drop_auth_missing']);
      expect(after[n]['drop_auth_expired']).toBe(before[n]['drop_auth_expired']);
    }
    expect(connects).toBeGreaterThan(20);
  }, 120_000);

  it('survives a SPIRE agent restart: live entries keep working, new pairs authenticate once it is back', async () => {
    await spire!.stopAgent('node-b');
    expect((await cluster.connect('web', 'db', 8080, 3000)).ok).toBe(true);
    await new Promise((r) => setTimeout(r, 1000));
    await spire!.startAgent('node-b');
    await expect
      .poll(() => cluster.logs('node-b', 'identity_source_state').map((l) => l['state']), { timeout: 20_000 })
      .toContain('connected');
    const r = await cluster.connect('web', 'cache', 8080, 20_000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok cache' });
    expect(cluster.daemons.get('node-b')!.child.exitCode).toBeNull();
  }, 60_000);

  it('removes the entries of an identity whose registration entry is deleted', async () => {
    expect(cluster.authEntries('node-b').length).toBeGreaterThan(0);
    await spire!.deleteEntry(entryIds.get('db')!);
    await expect
      .poll(() => cluster.logs('node-b', 'entry_gc').map((l) => l['reason']), { timeout: 30_000 })
      .toContain('svid-removed');
    // node-b keeps only cache's entry; the web<->db pair no longer passes on node-b.
    const left = JSON.parse(
      `[${cluster.cli('node-b', ['entries', '-o', 'json']).trim().split('\n').filter(Boolean).join(',')}]`,
    ) as Array<{
      localId: string;
    }>;
    expect(left.map((e) => e.localId)).not.toContain(id('db'));
  }, 60_000);
});
