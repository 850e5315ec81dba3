/**
 * Two daemons with the files identity source: node-a's workloads hold SVIDs of one CA, node-b's of
 * another, and each node's bundle file lists both. When each node's bundle file drops the other
 * node's CA, the pair's entries disappear at once on both nodes (bundle-revoked), not at expiry.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { PODS } from '../../demo/topology.js';
import { DevCa } from '../../src/identity/dev-ca.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

describe('a bundle change revokes the entries that relied on the removed CA', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;
  let dir: string;
  let caA: DevCa;
  let caB: DevCa;
  const bundleFile = (node: string): string => join(dir, `${node}-bundle.pem`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-bundle-'));
    caA = await DevCa.create('demo.local');
    caB = await DevCa.create('demo.local');
    const svids: Record<string, Array<{ spiffeId: string; cert: string; key: string }>> = {};
    for (const p of PODS) {
      const svid = await (p.node === 'node-a' ? caA : caB).issue(p.spiffeId, { ttlMs: 3_600_000 });
      const cert = join(dir, `${p.name}.crt`);
      const key = join(dir, `${p.name}.key`);
      writeFileSync(cert, svid.chainPem);
      writeFileSync(key, svid.keyPem, { mode: 0o600 });
      (svids[p.node] ??= []).push({ spiffeId: p.spiffeId, cert, key });
    }
    for (const node of ['node-a', 'node-b']) writeFileSync(bundleFile(node), caA.caPem + caB.caPem);
    env = await startDemoCluster('bnd', {
      rules: [{ name: 'web-to-db', from: id('web'), to: id('db') }],
      extraConfig: (node) => ({
        identity: { source: 'files', files: { bundle: bundleFile(node), svids: svids[node] } },
      }),
    });
    cluster = env.cluster;
  });

  afterAll(async () => {
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('authenticates across the two CAs, then revokes on both nodes when each drops the other CA', async () => {
    const r = await cluster.connect('web', 'db', 8080, 8000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });
    expect(cluster.authEntries('node-a')).toHaveLength(1);
    expect(cluster.authEntries('node-b')).toHaveLength(1);

    // node-a no longer trusts node-b's CA, and node-b no longer trusts node-a's.
    writeFileSync(bundleFile('node-a'), caA.caPem);
    writeFileSync(bundleFile('node-b'), caB.caPem);
    await expect
      .poll(() => [cluster.authEntries('node-a').length, cluster.authEntries('node-b').length], {
        timeout: 10_000,
      })
      .toEqual([0, 0]);
    for (const node of ['node-a', 'node-b']) {
      // Logs arrive through the daemon's stdout pipe, a moment after the maps changed.
      await expect
        .poll(() => cluster.logs(node, 'entry_revoked').map((l) => l['reason']), { timeout: 5000 })
        .toContain('bundle-revoked');
      // The audit writer commits the revocation's record after the map change and its log line:
      // ask until it is there (an empty answer is no line, not one).
      const revoked = () =>
        cluster
          .cli(node, ['events', '--reason', 'bundle-revoked', '-o', 'json'])
          .split('\n')
          .filter(Boolean)
          .map((l) => (JSON.parse(l) as { reason?: string }).reason);
      await expect.poll(revoked, { message: node, timeout: 10_000 }).toContain('bundle-revoked');
    }
    // The re-authentication that follows fails closed: the pair stays dropped.
    expect((await cluster.connect('web', 'db', 8080, 1500)).ok).toBe(false);
    expect(cluster.authEntries('node-a')).toHaveLength(0);
  }, 60_000);
});
