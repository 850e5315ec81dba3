/**
 * Short entry lifetimes: entries expire in the kernel, the next packet re-authenticates; and a
 * daemon stopped with SIGTERM leaves the datapath enforcing with its pinned maps.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, mountBpffs, summarize } from '../../demo/cluster.js';
import { buildTopology, PODS, type Topology } from '../../demo/topology.js';
import { NetnsLab } from '../helpers/netns.js';

const id = (name: string): string => PODS.find((p) => p.name === name)!.spiffeId;

describe('entry expiry and graceful shutdown', () => {
  const lab = new NetnsLab('exp');
  const workDir = mkdtempSync(join(tmpdir(), 'meshauth-exp-'));
  let unmount: () => void = () => {};
  let topo: Topology;
  let cluster: Cluster;

  beforeAll(async () => {
    unmount = mountBpffs(join(workDir, 'bpffs'));
    topo = buildTopology(lab);
    cluster = new Cluster(topo, {
      workDir,
      bpffs: join(workDir, 'bpffs'),
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'web-to-cache', from: id('web'), to: id('cache') },
      ],
      maxEntryTtl: '3s',
      reauthAt: 0,
    });
    await cluster.init();
    await cluster.start('node-a');
    await cluster.start('node-b');
    cluster.serve('db', 8080);
    cluster.serve('cache', 8080);
    await new Promise((r) => setTimeout(r, 300));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await lab.cleanup();
    unmount();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('expires the entry after the capped lifetime and re-authenticates on the next packet', async () => {
    expect(await cluster.connect('web', 'db', 8080, 8000)).toMatchObject({ ok: true });
    expect(cluster.logs('node-a', 'auth_succeeded')).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 3500));
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
    expect(cluster.logs('node-a', 'auth_succeeded')).toHaveLength(2);
    // GC removed the expired entry and recorded why.
    expect(cluster.logs('node-a', 'entry_gc').map((l) => l['reason'])).toContain('expired');
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
