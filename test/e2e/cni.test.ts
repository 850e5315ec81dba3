/**
 * meshauth beside a CNI it knows nothing about: the pods' interfaces are made by the reference CNI
 * plugins (bridge + host-local, then ptp + host-local), invoked through the CNI protocol as a
 * container runtime would, and meshauthd enforces with cgroup-skb programs on the pods' cgroup,
 * with no program on any interface. The daemons run with exactly the capabilities the Helm chart's
 * DaemonSet grants (not all of root's), which shows that they suffice, restart included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { cniBinDir, type CniPlugin } from '../helpers/cni.js';
import { CHART_CAPABILITIES } from '../helpers/helm.js';
import { isPrivileged, run } from '../helpers/netns.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

const binDir = cniBinDir();

describe.skipIf(!binDir || !isPrivileged()).each<CniPlugin>(['bridge', 'ptp'])(
  'beside the %s CNI plugin, cgroup attach mode',
  (plugin) => {
    let env: DemoCluster | undefined;
    let cluster: Cluster;

    beforeAll(async () => {
      env = await startDemoCluster(`cni${plugin[0]}`, {
        attach: 'cgroup',
        capabilities: [
          ...CHART_CAPABILITIES.base,
          ...CHART_CAPABILITIES.sockops,
          ...CHART_CAPABILITIES.synReplay,
        ],
        cni: { plugin, binDir: binDir as string },
        rules: [{ name: 'web-to-db', from: id('web'), to: id('db') }],
        serve: ['db', 'cache'],
      });
      cluster = env.cluster;
    }, 60_000);

    afterAll(async () => {
      await env?.teardown();
    });

    it('has pod interfaces the plugin made, and no meshauth program on any interface', () => {
      const nodeNs = cluster.topo.nodeNs['node-a'] as string;
      const links = JSON.parse(run('ip', ['-n', nodeNs, '-j', '-d', 'link', 'show'])) as Array<{
        ifname: string;
        linkinfo?: { info_kind?: string; info_slave_kind?: string };
      }>;
      const bridges = links.filter((l) => l.linkinfo?.info_kind === 'bridge').map((l) => l.ifname);
      const veths = links.filter((l) => l.linkinfo?.info_kind === 'veth' && l.ifname !== 'eth0');
      // one host-side veth per pod of the node, named by the plugin
      expect(veths).toHaveLength(2);
      for (const v of veths) expect(v.ifname).toMatch(/^veth[0-9a-f]{8}$/);
      if (plugin === 'bridge') {
        expect(bridges).toEqual(['br0']);
        for (const v of veths) expect(v.linkinfo?.info_slave_kind).toBe('bridge');
      } else {
        expect(bridges).toEqual([]);
        // ptp: the node routes each pod's /32 to its veth
        const routes = run('ip', ['-n', nodeNs, 'route', 'show', '10.90.1.11']);
        expect(routes).toMatch(/^10\.90\.1\.11 dev veth[0-9a-f]{8}/m);
      }
      const podNs = cluster.topo.podNs['web'] as string;
      expect(run('ip', ['-n', podNs, '-o', '-4', 'addr', 'show', 'dev', 'eth0'])).toContain(
        'inet 10.90.1.11/',
      );
      // no tc attach point anywhere on the node: no clsact qdisc on any interface
      for (const ns of Object.values(cluster.topo.nodeNs)) {
        expect(run('tc', ['-n', ns, 'qdisc', 'show']), ns).not.toMatch(/clsact/);
      }
    });

    it('drops the first SYN of the required pair, authenticates once, then connects', async () => {
      const before = cluster.counters('node-a');
      const r = await cluster.connect('web', 'db', 8080, 8000);
      expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
      const after = cluster.counters('node-a');
      expect(after['drop_auth_missing']! - before['drop_auth_missing']!).toBeGreaterThanOrEqual(1);
      // one signal per throttle window while the handshake runs (more than one on a loaded machine),
      // and one handshake for all of them
      expect(after['signal_sent']! - before['signal_sent']!).toBeGreaterThanOrEqual(1);
      expect(after['pass_authenticated']!).toBeGreaterThan(before['pass_authenticated']!);
      await expect
        .poll(() => cluster.logs('node-a', 'auth_succeeded').length, { timeout: 5_000, interval: 50 })
        .toBe(1);
      await expect
        .poll(() => cluster.logs('node-b', 'server_auth_succeeded').length, { timeout: 5_000, interval: 50 })
        .toBe(1);
      expect(cluster.authEntries('node-a')).toHaveLength(1);
      expect(cluster.authEntries('node-b')).toHaveLength(1);
      // node-b's ingress program saw the pair only once it was authenticated
      expect(cluster.counters('node-b')['drop_auth_missing']).toBe(0);
      expect(cluster.counters('node-b')['pass_authenticated']).toBeGreaterThan(0);
    });

    it('lets a pair no policy covers pass without a handshake', async () => {
      const before = cluster.counters('node-a');
      const r = await cluster.connect('api', 'cache', 8080, 2000);
      expect(r).toMatchObject({ ok: true, reply: 'ok cache' });
      const after = cluster.counters('node-a');
      expect(after['signal_sent']).toBe(before['signal_sent']);
      expect(after['pass_no_policy']!).toBeGreaterThan(before['pass_no_policy']!);
    });

    it('restarts a daemon with the same capabilities: programs replaced, entries kept, pair still passes', async () => {
      await cluster.stop('node-a', 'SIGTERM');
      await cluster.start('node-a');
      expect(cluster.logs('node-a', 'entries_restored')[0]).toMatchObject({ count: 1 });
      const before = cluster.counters('node-a');
      expect((await cluster.connect('web', 'db', 8080, 2000)).ok).toBe(true);
      expect(cluster.counters('node-a')['signal_sent']).toBe(before['signal_sent']);
    });
  },
);

describe.skipIf(!binDir || !isPrivileged())('without CAP_SYS_ADMIN, sock_ops on', () => {
  let env: DemoCluster | undefined;

  afterAll(async () => {
    await env?.teardown();
  });

  it('starts once, but a restart cannot replace its sock_ops program (why the chart adds SYS_ADMIN)', async () => {
    env = await startDemoCluster('cnicap', {
      attach: 'cgroup',
      capabilities: [...CHART_CAPABILITIES.base, ...CHART_CAPABILITIES.synReplay],
      cni: { plugin: 'bridge', binDir: binDir as string },
      rules: [{ name: 'web-to-db', from: id('web'), to: id('db') }],
      startOrder: ['node-a'],
      serve: [],
    });
    await env.cluster.stop('node-a', 'SIGTERM');
    await expect(env.cluster.start('node-a', 15_000)).rejects.toThrow(
      /datapath\.attach\[\d+\] \(sockops path [^)]+\): [^\n]*open program \d+: EPERM/,
    );
  }, 60_000);
});
