/**
 * The two-node namespace cluster with both meshauthd in Kubernetes mode (inventory.source and
 * policy.source `kubernetes`) against a real kube-apiserver: etcd and the API server run in a
 * control-plane namespace that the node namespaces reach over a bridge (test/helpers/kube-cluster.ts),
 * each daemon authenticates with a service-account token bound to its own node and holds only the
 * meshauthd ClusterRole. Pods, Nodes and MutualAuthPolicies are created through the API; no
 * inventory or policy file is read. Pod traffic between the nodes goes through WireGuard, whose
 * peers the daemons configure from each other's Node annotation.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { NODES, PODS } from '../../demo/topology.js';
import { formatCidr, IDENTITY_UNRESOLVED } from '../../src/datapath/index.js';
import { ANNOTATIONS } from '../../src/kubernetes/index.js';
import { dumpPinnedMap as dump } from '../helpers/bpftool.js';
import { kubeBinDir } from '../helpers/kube-apiserver.js';
import {
  demoRule as rule,
  demoServiceAccount as sa,
  KubeControlPlane,
  POLICIES,
} from '../helpers/kube-cluster.js';
import { isPrivileged } from '../helpers/netns.js';
import { until } from '../helpers/until.js';
import { startDemoCluster, type DemoCluster } from './setup.js';

const bin = kubeBinDir();
const POLICY = 'demo-auth';

/** A node's kernel ipcache, CIDR -> identity, read with bpftool. */
function ipcache(cluster: Cluster, node: string): Map<string, number> {
  const rows = dump<{ prefixlen: number; addr: number[] }, { identity: number }>(cluster, node, 'ma_ipcache');
  return new Map(
    rows.map((r) => [
      formatCidr({ prefixlen: r.key.prefixlen, addr: Buffer.from(r.key.addr) }),
      r.value.identity,
    ]),
  );
}

/** Modes (0 enforce, 1 permissive) of a node's kernel policy entries, read with bpftool. */
function policyModes(cluster: Cluster, node: string): number[] {
  return dump<unknown, { mode: number }>(cluster, node, 'ma_policy').map((r) => r.value.mode);
}

describe.skipIf(!bin || !isPrivileged())('two nodes in Kubernetes mode against a real API server', () => {
  let env: DemoCluster | undefined;
  let cp: KubeControlPlane;
  let cluster: Cluster;
  let kubeconfigDir = '';
  const kubeconfig = (node: string) => join(kubeconfigDir, `${node}.yaml`);
  const podIp = (name: string) => PODS.find((p) => p.name === name)!.ip;
  const createPod = (name: string, opts: { ip?: string; node?: string; sa?: string } = {}) => {
    const p = PODS.find((x) => x.name === name);
    return cp.createPod({
      namespace: 'demo',
      name,
      node: opts.node ?? p!.node,
      serviceAccount: opts.sa ?? name,
      ips: [opts.ip ?? p!.ip],
    });
  };
  const counters = (node: string) => cluster.counters(node);
  const delta = (before: Record<string, number>, after: Record<string, number>, k: string) =>
    (after[k] ?? 0) - (before[k] ?? 0);
  /** Every node's kernel policy holds entries, all in `mode` (or holds none, for 'none'). */
  const policyInForce = (mode: 'enforce' | 'permissive' | 'none') => () =>
    NODES.every((n) => {
      const modes = policyModes(cluster, n.name);
      return mode === 'none'
        ? modes.length === 0
        : modes.length > 0 && modes.every((m) => m === (mode === 'enforce' ? 0 : 1));
    });
  /** Both nodes' ipcache resolve `ip` to a workload identity (or no longer hold its /32). */
  const ipcacheHas = (ip: string, present: boolean) => () =>
    NODES.every((n) => {
      const id = ipcache(cluster, n.name).get(`${ip}/32`);
      return present ? id !== undefined && id !== IDENTITY_UNRESOLVED : id === undefined;
    });
  /** The daemon's view of its watches, through its API (meshauth status). */
  const watchesSynced = (node: string): boolean[] => {
    const s = JSON.parse(cluster.cli(node, ['status', '-o', 'json'])) as { counters: Record<string, number> };
    return ['pods', 'nodes', 'mutualauthpolicies'].map((r) => s.counters[`kubernetes_${r}_synced`] === 1);
  };
  const logsOf = () => NODES.map((n) => `${n.name}:\n${summarize(cluster.logs(n.name))}`).join('\n');
  type PolicyRecord = { reason?: string; details: Record<string, unknown> };
  /** A node's `policy-changed` audit records, oldest first, through its API (meshauth events). */
  const policyRecords = (node: string): PolicyRecord[] =>
    cluster
      .cli(node, ['events', '--type', 'policy-changed', '-o', 'json'])
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as PolicyRecord);
  /** Waits until every node's trail holds `n` policy-changed records; returns the last of each. */
  const lastPolicyRecords = async (n: number): Promise<PolicyRecord[]> => {
    await until(
      `${n} policy-changed records on every node`,
      () => NODES.every((x) => policyRecords(x.name).length >= n),
      15_000,
      () => NODES.map((x) => `${x.name}: ${JSON.stringify(policyRecords(x.name))}`).join('\n'),
    );
    return NODES.map((x) => {
      const records = policyRecords(x.name);
      expect(records, x.name).toHaveLength(n);
      return records.at(-1)!;
    });
  };
  const noNames = { count: 0, names: [] };

  beforeAll(async () => {
    kubeconfigDir = mkdtempSync(join(tmpdir(), 'meshauth-e2e-kubeconfig-'));
    const started = await startDemoCluster('k8s', {
      rules: [],
      wireguard: {},
      startOrder: [],
      serve: ['db', 'cache'],
      extraConfig: (node) => ({
        inventory: { source: 'kubernetes' },
        policy: { source: 'kubernetes' },
        kubernetes: { kubeconfig: kubeconfig(node) },
      }),
    });
    env = started;
    cluster = started.cluster;
    // No key is provisioned: each daemon makes its own and publishes it on its Node.
    for (const n of NODES)
      rmSync(join(cluster.stateDir(n.name), 'wireguard', 'private.key'), { force: true });
    cp = await KubeControlPlane.start({
      lab: started.lab,
      bin: bin!,
      nodes: NODES.map((n) => ({
        name: n.name,
        ns: cluster.topo.nodeNs[n.name]!,
        internalIp: n.underlayIp,
        podCidrs: [n.podCidr],
      })),
      kubeconfigPath: kubeconfig,
    });
    // The cache pod is created later (while the API server is back from an outage).
    for (const p of ['web', 'api', 'db']) await createPod(p);
    for (const n of NODES) await cluster.start(n.name, 60_000);
  }, 240_000);

  afterAll(async () => {
    await env?.teardown();
    if (kubeconfigDir) rmSync(kubeconfigDir, { recursive: true, force: true });
  });

  it("publishes each node's WireGuard key as its Node annotation, which the peer configures", async () => {
    const wg = (node: string, what: string[]) =>
      cluster.topo.lab
        .exec(cluster.topo.nodeNs[node]!, 'wg', ['show', cluster.wgInterface(node), ...what])
        .trim();
    const keys = Object.fromEntries(NODES.map((n) => [n.name, wg(n.name, ['public-key'])]));
    for (const n of NODES) {
      // made by the daemon at start, not by the test
      expect(existsSync(join(cluster.stateDir(n.name), 'wireguard', 'private.key'))).toBe(true);
      await until(`${n.name}'s key annotation`, async () => {
        const a = await cp.nodeAnnotations(n.name);
        return a[ANNOTATIONS.wireguardPublicKey] === keys[n.name];
      });
    }
    const [a, b] = NODES;
    // Each peer learned the other's key from the Node object (no file lists it) ...
    await until(
      'peers configured from the annotations',
      () =>
        wg(a!.name, ['peers']).includes(keys[b!.name]!) && wg(b!.name, ['peers']).includes(keys[a!.name]!),
    );
    expect(wg(b!.name, ['endpoints'])).toContain(`${keys[a!.name]}\t${a!.underlayIp}:`);
    // ... and pod traffic crosses the tunnel built from them (no policy yet: nothing to authenticate).
    const r = await cluster.connect('web', 'db', 8080, 10_000);
    expect(r, logsOf()).toMatchObject({ ok: true, reply: 'ok db' });
    expect(Number(wg(a!.name, ['transfer']).split(/\s+/)[1])).toBeGreaterThan(0);
  });

  it('enforce: the first SYN of the pair is dropped and exactly one handshake runs', async () => {
    await cp.applyPolicy(POLICY, { mode: 'enforce', rules: [rule('web', 'db')] });
    await until('enforce policy in both kernels', policyInForce('enforce'), 15_000, logsOf);
    // The audit trail: the (empty) policy at start, then one record for the new object, however
    // many object events (its status write comes back as an update) it took.
    for (const n of NODES) {
      expect(policyRecords(n.name)[0], n.name).toMatchObject({
        reason: 'daemon-start',
        details: { source: 'kubernetes', rules: 0, added: noNames },
      });
    }
    for (const r of await lastPolicyRecords(2)) {
      expect(r).toMatchObject({
        reason: 'kubernetes-update',
        details: {
          source: 'kubernetes',
          rules: 1,
          modes: { required: 1, permissive: 0, disabled: 0 },
          added: { count: 1, names: [`${POLICY}/web-to-db`] },
          removed: noNames,
        },
      });
    }
    const before = { a: counters('node-a'), b: counters('node-b') };
    const r = await cluster.connect('web', 'db', 8080, 10_000);
    expect(r, logsOf()).toMatchObject({ ok: true, reply: 'ok db' });
    const after = { a: counters('node-a'), b: counters('node-b') };
    expect(delta(before.a, after.a, 'drop_auth_missing')).toBeGreaterThanOrEqual(1);
    // (one signal per throttle window while SYNs are dropped; the handshake runs once)
    expect(delta(before.a, after.a, 'signal_sent')).toBeGreaterThanOrEqual(1);
    expect(delta(before.a, after.a, 'pass_authenticated')).toBeGreaterThan(0);
    await expect
      .poll(() => cluster.logs('node-a', 'auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(1);
    await expect
      .poll(() => cluster.logs('node-b', 'server_auth_succeeded').length, { timeout: 5_000, interval: 50 })
      .toBe(1);
    expect(cluster.logs('node-b', 'auth_succeeded')).toHaveLength(0);
    expect(cluster.authEntries('node-a')).toHaveLength(1);
    expect(cluster.authEntries('node-b')).toHaveLength(1);
  });

  it('permissive: an unauthenticated pair passes, counted as pass_permissive, and is still authenticated', async () => {
    await cp.applyPolicy(POLICY, { mode: 'permissive' });
    await until('permissive policy in both kernels', policyInForce('permissive'), 15_000, logsOf);
    for (const r of await lastPolicyRecords(3)) {
      expect(r).toMatchObject({
        reason: 'kubernetes-update',
        details: {
          rules: 1,
          changed: { count: 1, names: [`${POLICY}/web-to-db`] },
          modeChanged: {
            count: 1,
            rules: [{ name: `${POLICY}/web-to-db`, from: 'required', to: 'permissive' }],
          },
        },
      });
    }
    cluster.flushEntries();
    for (const n of NODES) expect(cluster.authEntries(n.name), n.name).toHaveLength(0);
    // Handshakes of the pair each node ran as the client (web->db from node-a, db->web from node-b).
    const id = (name: string) => `spiffe://demo.local/ns/demo/sa/${name}`;
    const ran = (node: string, local: string, remote: string) =>
      cluster
        .logs(node, 'auth_succeeded')
        .filter((l) => l.local_id === id(local) && l.remote_id === id(remote)).length;
    const clientHandshakes = () => ({ a: ran('node-a', 'web', 'db'), b: ran('node-b', 'db', 'web') });
    const handshakes = clientHandshakes();
    const before = { a: counters('node-a'), b: counters('node-b') };
    const r = await cluster.connect('web', 'db', 8080, 10_000);
    expect(r, logsOf()).toMatchObject({ ok: true, reply: 'ok db' });
    const after = { a: counters('node-a'), b: counters('node-b') };
    expect(delta(before.a, after.a, 'pass_permissive')).toBeGreaterThan(0);
    expect(delta(before.a, after.a, 'drop_auth_missing')).toBe(0);
    // The pass was signalled like a drop: the handshake runs anyway. Unlike enforce mode (the SYN
    // stops at node-a), the traffic reaches node-b unauthenticated too, which passes it and signals
    // as well: either node may start the handshake, and the first to land writes both nodes'
    // entries (the client's own, the server's reverse one). The other node's signal, handled after
    // that, finds a live entry and starts nothing (handled before, it runs a second handshake):
    // which node logs auth_succeeded is a race, but one of them does.
    expect(delta(before.a, after.a, 'signal_sent')).toBeGreaterThanOrEqual(1);
    expect(delta(before.b, after.b, 'drop_auth_missing')).toBe(0);
    await until(
      'handshake in permissive mode',
      () => {
        const now = clientHandshakes();
        return now.a > handshakes.a || now.b > handshakes.b;
      },
      15_000,
      logsOf,
    );
    await until(
      'entries written on both nodes',
      () => NODES.every((n) => cluster.authEntries(n.name).length === 1),
      15_000,
      logsOf,
    );
  });

  it('deleting the policy stops enforcement', async () => {
    await cp.deletePolicy(POLICY);
    await until('no policy in either kernel', policyInForce('none'), 15_000, logsOf);
    for (const r of await lastPolicyRecords(4)) {
      expect(r).toMatchObject({
        reason: 'kubernetes-update',
        details: { rules: 0, added: noNames, removed: { count: 1, names: [`${POLICY}/web-to-db`] } },
      });
    }
    cluster.flushEntries();
    const before = counters('node-a');
    const r = await cluster.connect('web', 'db', 8080, 10_000);
    expect(r, logsOf()).toMatchObject({ ok: true, reply: 'ok db' });
    const after = counters('node-a');
    expect(delta(before, after, 'pass_no_policy')).toBeGreaterThan(0);
    expect(delta(before, after, 'drop_auth_missing')).toBe(0);
    expect(delta(before, after, 'signal_sent')).toBe(0);
  });

  it('an invalid policy is reported on the object and in one Event per node, and changes nothing', async () => {
    // Valid for the CRD's schema, not for meshauth ("**" is no SPIFFE ID pattern).
    await cp.applyPolicy('broken', {
      mode: 'enforce',
      rules: [{ name: 'r', from: sa('web'), to: { spiffeId: 'spiffe://demo.local/ns/**' } }],
    });
    type Ev = { reportingComponent?: string; reportingInstance?: string; reason?: string; count?: number };
    const events = async () =>
      (
        await cp.kube.json<{ items: Ev[] }>(
          'GET',
          '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dbroken',
        )
      ).items;
    // Written by the daemons with their own credentials (status and events of the ClusterRole).
    await until(
      'an Event from each node',
      async () => new Set((await events()).map((e) => e.reportingInstance)).size === NODES.length,
      15_000,
      logsOf,
    );
    const got = await events();
    expect(got.map((e) => e.reportingInstance).sort()).toEqual(NODES.map((n) => n.name));
    for (const e of got)
      expect(e).toMatchObject({ reportingComponent: 'meshauth.io/meshauthd', reason: 'InvalidRules' });
    type Obj = { status?: { conditions?: Array<{ type: string; status: string }> } };
    await until('Valid=False on the object', async () => {
      const obj = await cp.kube.json<Obj>('GET', `${POLICIES}/broken`);
      return obj.status?.conditions?.find((c) => c.type === 'Valid')?.status === 'False';
    });
    expect(policyInForce('none')()).toBe(true);
    await cp.deletePolicy('broken');
  });

  it('deleting a pod removes its ipcache entries on both nodes within a second', async () => {
    const ip = '10.90.2.50';
    await createPod('extra', { ip, node: 'node-b', sa: 'extra' });
    await until('extra in both ipcaches', ipcacheHas(ip, true), 15_000, logsOf);
    const deleted = await cp.deletePod('demo', 'extra');
    await until('extra gone from both ipcaches', ipcacheHas(ip, false), 5_000, logsOf);
    expect(performance.now() - deleted).toBeLessThan(1000);
    // The address falls back to node-b's pod CIDR entry: unresolved, not unknown.
    expect(ipcache(cluster, 'node-a').get('10.90.2.0/24')).toBe(IDENTITY_UNRESOLVED);
  });

  it('an API server outage changes nothing for live traffic; enforcement goes on; new pods are picked up after', async () => {
    await cp.applyPolicy(POLICY, {
      mode: 'enforce',
      rules: [rule('web', 'db'), rule('api', 'db'), rule('api', 'cache')],
    });
    await until('enforce policy in both kernels', policyInForce('enforce'), 15_000, logsOf);
    cluster.flushEntries();
    expect((await cluster.connect('web', 'db', 8080, 10_000)).ok).toBe(true);
    const live = { a: counters('node-a'), b: counters('node-b') };
    const [liveEntry] = cluster.authEntries('node-a');
    expect(cluster.authEntries('node-a')).toHaveLength(1);

    // Live traffic of the authenticated pair, all through the outage.
    const results: boolean[] = [];
    let flowing = true;
    const traffic = (async () => {
      while (flowing) {
        results.push((await cluster.connect('web', 'db', 8080, 5000)).ok);
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    try {
      const failedBefore = NODES.map((n) => cluster.logs(n.name, 'kubernetes_watch_failed').length);
      await cp.kube.stopApiServer();
      await until(
        'both daemons see the API server gone',
        () =>
          NODES.every((n, i) => cluster.logs(n.name, 'kubernetes_watch_failed').length > failedBefore[i]!),
        30_000,
        logsOf,
      );

      await until(
        'the status API says the watches are down',
        () => NODES.every((n) => !watchesSynced(n.name).some(Boolean)),
        30_000,
        logsOf,
      );

      // Down: a covered pair never authenticated before is still enforced, from the last known
      // inventory and policy (first SYN dropped, one handshake), ...
      const down0 = counters('node-a');
      const hs0 = cluster.logs('node-a', 'auth_succeeded').length;
      const r = await cluster.connect('api', 'db', 8080, 10_000);
      expect(r, logsOf()).toMatchObject({ ok: true, reply: 'ok db' });
      expect(delta(down0, counters('node-a'), 'drop_auth_missing')).toBeGreaterThanOrEqual(1);
      // The entry lets the connection through before the handshake's log line reaches the reader.
      await expect.poll(() => cluster.logs('node-a', 'auth_succeeded').length).toBe(hs0 + 1);
      // ... and an address in a pod CIDR that no known pod holds stays closed to a required pair.
      const down1 = counters('node-a');
      expect((await cluster.connect('api', 'cache', 8080, 1500)).ok).toBe(false);
      expect(delta(down1, counters('node-a'), 'drop_unresolved_pod_ip')).toBeGreaterThan(0);

      const syncedBefore = NODES.map(
        (n) => cluster.logs(n.name, 'kubernetes_synced').filter((l) => l['resource'] === 'pods').length,
      );
      await cp.kube.startApiServer();
      await until(
        'both daemons resumed the pod watch',
        () =>
          NODES.every(
            (n, i) =>
              cluster.logs(n.name, 'kubernetes_synced').filter((l) => l['resource'] === 'pods').length >
              syncedBefore[i]!,
          ),
        60_000,
        logsOf,
      );
      await until(
        'the status API says the watches are synced',
        () => NODES.every((n) => watchesSynced(n.name).every(Boolean)),
        30_000,
        logsOf,
      );
    } finally {
      flowing = false;
      await traffic;
    }
    expect(results.length).toBeGreaterThan(2);
    expect(results.every(Boolean)).toBe(true);
    // The live pair was never dropped or re-authenticated on either node.
    const after = { a: counters('node-a'), b: counters('node-b') };
    expect(delta(live.b, after.b, 'drop_auth_missing')).toBe(0);
    // Its entry is the one written before the outage (same expiry: not re-authenticated).
    expect(cluster.authEntries('node-a')).toContainEqual(liveEntry);
    expect(cluster.authEntries('node-a')).toHaveLength(2);

    // Back: a pod created now is picked up, and its pair authenticates.
    await createPod('cache');
    await until('cache in both ipcaches', ipcacheHas(podIp('cache'), true), 15_000, logsOf);
    const hs1 = cluster.logs('node-a', 'auth_succeeded').length;
    const c = await cluster.connect('api', 'cache', 8080, 10_000);
    expect(c, logsOf()).toMatchObject({ ok: true, reply: 'ok cache' });
    // The entry lets the connection through before the handshake's log line reaches the reader.
    await expect.poll(() => cluster.logs('node-a', 'auth_succeeded').length).toBe(hs1 + 1);
  }, 150_000);

  it('a pod created while the nodes cannot reach the API server is picked up when they can again', async () => {
    // Network loss between the nodes and the control plane (the API server itself stays up): the
    // daemons' watch connections see nothing, not even a reset.
    const ports = NODES.map((_, i) => `port${i}`);
    const setPorts = (state: 'up' | 'down') => {
      for (const p of ports) cluster.topo.lab.exec(cp.ns, 'ip', ['link', 'set', p, state]);
    };
    const ip = '10.90.1.50';
    setPorts('down');
    try {
      await createPod('late', { ip, node: 'node-a', sa: 'late' });
      // Meanwhile authenticated traffic is untouched.
      expect((await cluster.connect('web', 'db', 8080, 5000)).ok).toBe(true);
    } finally {
      setPorts('up');
    }
    await until('the pod created during the loss in both ipcaches', ipcacheHas(ip, true), 60_000, logsOf);
    await cp.deletePod('demo', 'late');
    await until('late gone from both ipcaches', ipcacheHas(ip, false), 15_000, logsOf);
  }, 90_000);
});
