/**
 * The Kubernetes API server stopped (SIGTERM), and killed (SIGKILL) for longer than the informers'
 * back-off, while pods churn: two meshauthd in Kubernetes mode (inventory and policy from a real
 * kube-apiserver + etcd in a control-plane namespace, test/helpers/kube-cluster.ts), the real
 * kernel datapath in node namespaces. Pods are created and deleted at tens per second, addresses
 * are reused by pods of another service account, and a MutualAuthPolicy changes. So that the
 * daemons miss changes they must catch up on by a re-list, the nodes' links to the control plane
 * stay cut while the API server is back and changed, and come up afterwards.
 *
 * Checked: neither daemon exits; while the API server is away the kernel maps keep the last known
 * inventory and policy (a covered pair is still enforced); once it is back the ipcache and policy
 * map hold exactly what the API holds (pod addresses present/absent, same service account <=> same
 * identity, a reused address under its new pod's identity) within a bound after the re-list; no
 * auth entry is left for an identity no pod has; logs, `meshauth status`, the sync metrics and
 * /readyz say what happened.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { NODES, PODS } from '../../demo/topology.js';
import { formatCidr, IDENTITY_UNRESOLVED } from '../../src/datapath/index.js';
import { dumpPinnedMap as dump } from '../helpers/bpftool.js';
import { kubeBinDir } from '../helpers/kube-apiserver.js';
import { demoRule as rule, KubeControlPlane } from '../helpers/kube-cluster.js';
import { isPrivileged } from '../helpers/netns.js';
import { until as pollUntil } from '../helpers/until.js';
import { startDemoCluster, type DemoCluster } from '../e2e/setup.js';

const bin = kubeBinDir();
const POLICY = 'churn-auth';
const METRICS = '127.0.0.1:9464';
/** Service accounts of the churning pods (each one identity). */
const CHURN_SAS = ['c0', 'c1', 'c2'];
/** The addresses churned pods take (anchors and demo pods sit outside this range). */
const CHURN_IPS = [1, 2].flatMap((n) => Array.from({ length: 50 }, (_, i) => `10.90.${n}.${150 + i}`));
/** Pod creations per outage (plus as many deletions, about). */
const CREATES = Number(process.env.MESHAUTH_APICHURN_CREATES ?? 150);

/** Polls every 50 ms: the API server is under churn. */
const until: typeof pollUntil = (what, fn, timeoutMs, detail) => pollUntil(what, fn, timeoutMs, detail, 50);

/** A node's kernel ipcache /32 entries inside the pod CIDRs (10.90.0.0/16): address -> identity. */
function podIpcache(cluster: Cluster, node: string): Map<string, number> {
  const rows = dump<{ prefixlen: number; addr: number[] }, { identity: number }>(cluster, node, 'ma_ipcache');
  const out = new Map<string, number>();
  for (const r of rows) {
    const cidr = formatCidr({ prefixlen: r.key.prefixlen, addr: Buffer.from(r.key.addr) });
    if (cidr.startsWith('10.90.') && cidr.endsWith('/32')) out.set(cidr.slice(0, -3), r.value.identity);
  }
  return out;
}

/** A node's kernel policy entries as "local>remote:mode". */
function policyEntries(cluster: Cluster, node: string): string[] {
  return dump<{ local_id: number; remote_id: number }, { mode: number }>(cluster, node, 'ma_policy')
    .map((r) => `${r.key.local_id}>${r.key.remote_id}:${r.value.mode}`)
    .sort();
}

/** A pod as the API holds it and the inventory should take it. */
interface ApiPod {
  name: string;
  node: string;
  sa: string;
  ip: string;
}

interface PodList {
  items: Array<{
    metadata: { name: string; namespace: string; deletionTimestamp?: string };
    spec: { nodeName?: string; serviceAccountName?: string; hostNetwork?: boolean };
    status?: { phase?: string; podIPs?: Array<{ ip: string }> };
  }>;
}

describe.skipIf(!bin || !isPrivileged())('Kubernetes API server stopped and killed mid-churn', () => {
  let env: DemoCluster | undefined;
  let cp: KubeControlPlane;
  let cluster: Cluster;
  let kubeconfigDir = '';
  const pids: Record<string, number> = {};
  const kubeconfig = (node: string) => join(kubeconfigDir, `${node}.yaml`);
  const logsOf = () => NODES.map((n) => `${n.name}:\n${summarize(cluster.logs(n.name))}`).join('\n');
  const nodeNs = (node: string) => cluster.topo.nodeNs[node]!;
  const counters = (node: string) => cluster.counters(node);
  const createDemoPod = (name: string) => {
    const p = PODS.find((x) => x.name === name)!;
    return cp.createPod({ namespace: 'demo', name, node: p.node, serviceAccount: name, ips: [p.ip] });
  };
  /** Log lines of `event` logged at or after `mark` (Unix ms; pino writes ISO times). */
  const eventsSince = (node: string, event: string, mark: number) =>
    cluster.logs(node, event).filter((l) => {
      const t = l['time'];
      return (typeof t === 'string' ? Date.parse(t) : Number(t)) >= mark;
    });
  const metric = (node: string, path: string) =>
    cluster.topo.lab.exec(nodeNs(node), 'curl', [
      '-s',
      '-o',
      '-',
      '-w',
      '\n%{http_code}',
      `http://${METRICS}${path}`,
    ]);
  const syncedGauge = (node: string, resource: string): number => {
    const m = new RegExp(`^meshauth_kubernetes_sync_synced\\{resource="${resource}"\\} (\\d+)$`, 'm').exec(
      metric(node, '/metrics'),
    );
    if (!m) throw new Error(`no meshauth_kubernetes_sync_synced for ${resource} on ${node}`);
    return Number(m[1]);
  };
  const statusSynced = (node: string): boolean[] => {
    const s = JSON.parse(cluster.cli(node, ['status', '-o', 'json'])) as { counters: Record<string, number> };
    return ['pods', 'nodes', 'mutualauthpolicies'].map((r) => s.counters[`kubernetes_${r}_synced`] === 1);
  };

  /** Workload pods the API holds now (admin view): running, with an address, not host network. */
  async function apiPods(): Promise<ApiPod[]> {
    const list = await cp.kube.json<PodList>('GET', '/api/v1/namespaces/demo/pods');
    return list.items
      .filter(
        (p) =>
          !p.metadata.deletionTimestamp &&
          !p.spec.hostNetwork &&
          p.status?.phase === 'Running' &&
          (p.status.podIPs?.length ?? 0) > 0,
      )
      .map((p) => ({
        name: p.metadata.name,
        node: p.spec.nodeName ?? '',
        sa: p.spec.serviceAccountName ?? '',
        ip: p.status!.podIPs![0]!.ip,
      }));
  }

  /** The policy rules in force, as service-account pairs. */
  let rules: Array<[string, string]> = [];

  /**
   * What `node`'s maps must hold for `pods` and `rules`, checked against the kernel: exactly the
   * pods' addresses; one identity per service account, distinct between accounts; one policy
   * entry per rule direction with both ends known and a local one, and one from each local end to
   * unresolved pod addresses (enforce). Returns the mismatch, or '' when equal.
   */
  function mismatch(node: string, pods: ApiPod[]): string {
    const cache = podIpcache(cluster, node);
    const want = new Set(pods.map((p) => p.ip));
    const missing = [...want].filter((ip) => !cache.has(ip));
    const stale = [...cache.keys()].filter((ip) => !want.has(ip));
    if (missing.length || stale.length) return `${node} ipcache: missing ${missing} stale ${stale}`;
    const idOfSa = new Map<string, number>();
    for (const p of pods) {
      const id = cache.get(p.ip)!;
      const prev = idOfSa.get(p.sa);
      if (prev !== undefined && prev !== id)
        return `${node}: ${p.name} (${p.ip}) has ${id}, its account ${prev}`;
      idOfSa.set(p.sa, id);
    }
    if (new Set(idOfSa.values()).size !== idOfSa.size) return `${node}: two accounts share an identity`;
    const local = new Set(pods.filter((p) => p.node === node).map((p) => p.sa));
    const want2 = new Set<string>();
    for (const [from, to] of rules) {
      const f = idOfSa.get(from);
      const t = idOfSa.get(to);
      // A local end of a required pair stays closed to pod-CIDR addresses no known pod holds,
      // also while the other end has no pod at all.
      if (f !== undefined && local.has(from)) want2.add(`${f}>${IDENTITY_UNRESOLVED}:0`);
      if (t !== undefined && local.has(to)) want2.add(`${t}>${IDENTITY_UNRESOLVED}:0`);
      if (f === undefined || t === undefined) continue;
      if (local.has(from)) want2.add(`${f}>${t}:0`);
      if (local.has(to)) want2.add(`${t}>${f}:0`);
    }
    const have = policyEntries(cluster, node);
    const w = [...want2].sort();
    if (JSON.stringify(have) !== JSON.stringify(w)) return `${node} policy: have ${have} want ${w}`;
    return '';
  }

  /**
   * Pod churn against the API as the admin: creates (about 55 %) and deletes, at most one request
   * in flight, new pods preferably on an address freed just before (by a pod of another account).
   * No request is started while the API server is stopped; one in flight at the stop may fail,
   * and an address whose create or delete failed is not handed out again (the API may or may not
   * have taken it).
   */
  class Churn {
    private live = new Map<string, { ip: string; sa: string }>();
    private free: string[] = [];
    private seq = 0;
    creates = 0;
    deletes = 0;
    reused = 0;
    failed = 0;
    private running = false;
    private loop: Promise<void> | undefined;

    constructor() {
      this.free = [...CHURN_IPS];
    }

    async step(): Promise<void> {
      if ((this.live.size < 30 || Math.random() < 0.55) && this.free.length > 0) {
        const ip = this.free.shift()!;
        const name = `p-${this.seq++}`;
        const sa = CHURN_SAS[this.seq % CHURN_SAS.length]!;
        try {
          await cp.createPod({
            namespace: 'demo',
            name,
            node: ip.startsWith('10.90.1.') ? 'node-a' : 'node-b',
            serviceAccount: sa,
            ips: [ip],
          });
          this.live.set(name, { ip, sa });
          this.creates++;
        } catch {
          this.failed++;
        }
      } else {
        const names = [...this.live.keys()];
        const name = names[Math.floor(Math.random() * names.length)]!;
        const p = this.live.get(name)!;
        this.live.delete(name);
        try {
          await cp.deletePod('demo', name);
          // Reused next, by a pod of the next account.
          this.free.unshift(p.ip);
          this.deletes++;
        } catch {
          this.failed++;
        }
      }
    }

    /**
     * Takes the live pods and free addresses from the API itself. A request that failed (in
     * flight at a stop, or refused by a server still starting) may or may not have been applied,
     * so its address is kept out until the API says which; without this, failures on a loaded
     * machine leak addresses until no churned pod is left to reuse.
     */
    async resync(): Promise<void> {
      const list = await cp.kube.json<PodList>('GET', '/api/v1/namespaces/demo/pods');
      const held = new Set<string>();
      this.live.clear();
      for (const p of list.items) {
        for (const a of p.status?.podIPs ?? []) held.add(a.ip);
        const ip = p.status?.podIPs?.[0]?.ip;
        if (p.metadata.name.startsWith('p-') && !p.metadata.deletionTimestamp && ip)
          this.live.set(p.metadata.name, { ip, sa: p.spec.serviceAccountName ?? '' });
      }
      this.free = CHURN_IPS.filter((ip) => !held.has(ip));
    }

    start(): void {
      this.running = true;
      this.loop = (async () => {
        await this.resync();
        while (this.running) {
          // Requests go out while the API server runs; those in flight when it stops fail.
          if (!cp.kube.apiServerRunning() || (this.live.size === 0 && this.free.length === 0)) {
            await new Promise((r) => setTimeout(r, 50));
            continue;
          }
          const f = this.failed;
          await this.step();
          if (this.failed > f) await new Promise((r) => setTimeout(r, 50));
        }
      })();
    }

    async stop(): Promise<void> {
      this.running = false;
      await this.loop;
    }

    /**
     * A live churned pod whose address another account is to reuse, preferring account `c0`;
     * creates one when the churn has none live. Call with the churn stopped.
     */
    async victim(): Promise<{ name: string; ip: string; sa: string }> {
      await this.resync();
      let any: { name: string; ip: string; sa: string } | undefined;
      for (const [name, p] of this.live) {
        if (p.sa === 'c0') return { name, ...p };
        any ??= { name, ...p };
      }
      if (any) return any;
      const ip = this.free.shift()!;
      const name = `p-${this.seq++}`;
      await cp.createPod({
        namespace: 'demo',
        name,
        node: ip.startsWith('10.90.1.') ? 'node-a' : 'node-b',
        serviceAccount: 'c0',
        ips: [ip],
      });
      this.creates++;
      return { name, ip, sa: 'c0' };
    }

    forget(name: string): void {
      this.live.delete(name);
    }
  }

  let churn: Churn | undefined;

  beforeAll(async () => {
    kubeconfigDir = mkdtempSync(join(tmpdir(), 'meshauth-fault-kubeconfig-'));
    const started = await startDemoCluster('apis', {
      rules: [],
      startOrder: [],
      serve: ['db'],
      extraConfig: (node) => ({
        inventory: { source: 'kubernetes' },
        policy: { source: 'kubernetes' },
        kubernetes: { kubeconfig: kubeconfig(node) },
        metrics: { listen: METRICS },
      }),
    });
    env = started;
    cluster = started.cluster;
    cp = await KubeControlPlane.start({
      lab: started.lab,
      bin: bin!,
      nodes: NODES.map((n) => ({
        name: n.name,
        ns: nodeNs(n.name),
        internalIp: n.underlayIp,
        podCidrs: [n.podCidr],
      })),
      kubeconfigPath: kubeconfig,
    });
    for (const p of ['web', 'api', 'db']) await createDemoPod(p);
    // One pod per churn account that never goes: the accounts' identities stay in the maps.
    for (const [i, s] of CHURN_SAS.entries())
      await cp.createPod({
        namespace: 'demo',
        name: `anchor-${s}`,
        node: 'node-b',
        serviceAccount: s,
        ips: [`10.90.2.${100 + i}`],
      });
    rules = [
      ['web', 'db'],
      ['api', 'db'],
    ];
    await cp.applyPolicy(POLICY, { mode: 'enforce', rules: rules.map(([f, t]) => rule(f, t)) });
    for (const n of NODES) {
      const h = await cluster.start(n.name, 60_000);
      pids[n.name] = h.child.pid!;
    }
    const pods = await apiPods();
    await until(
      'both nodes hold the API state',
      () => NODES.every((n) => mismatch(n.name, pods) === ''),
      30_000,
      () => NODES.map((n) => mismatch(n.name, pods)).join('\n'),
    );
  }, 240_000);

  afterAll(async () => {
    await env?.teardown();
    if (kubeconfigDir) rmSync(kubeconfigDir, { recursive: true, force: true });
  });

  /**
   * One outage: churn, stop the API server with `signal` mid-churn, check the outage (and, with
   * `minBackoffMs`, wait until the daemons back off at least that long), then with the nodes cut
   * off restart it and change pods and policy, reconnect, and check the convergence.
   */
  async function outage(
    tag: string,
    signal: NodeJS.Signals,
    minBackoffMs: number,
    newRules: Array<[string, string]>,
  ) {
    // One churn for all rounds: it knows which addresses the API's pods hold.
    churn ??= new Churn();
    // A round that failed before its end left the client pod deleted: each round starts with it.
    if (!(await apiPods()).some((p) => p.name === 'api')) await createDemoPod('api');
    const base = { creates: churn.creates, deletes: churn.deletes, failed: churn.failed };
    const mark = Date.now();
    churn.start();
    await until(
      'churn under way',
      () => churn!.creates + churn!.deletes >= base.creates + base.deletes + 40,
      30_000,
    );
    const failedBefore = NODES.map((n) => eventsSince(n.name, 'kubernetes_watch_failed', mark).length);
    await cp.kube.stopApiServer(signal);
    await until(
      'both daemons see the API server gone',
      () =>
        NODES.every((n, i) => eventsSince(n.name, 'kubernetes_watch_failed', mark).length > failedBefore[i]!),
      30_000,
      logsOf,
    );
    await until(
      'status: watches down',
      () => NODES.every((n) => !statusSynced(n.name).some(Boolean)),
      30_000,
      logsOf,
    );
    for (const n of NODES) {
      // Unsynced in the metrics; still ready: enforcement goes on from the last known state.
      expect(syncedGauge(n.name, 'pods')).toBe(0);
      expect(metric(n.name, '/readyz').trim().split('\n').at(-1)).toBe('200');
    }
    if (minBackoffMs > 0)
      await until(
        `both daemons backing off ${minBackoffMs} ms or more`,
        () =>
          NODES.every((n) =>
            eventsSince(n.name, 'kubernetes_watch_failed', mark).some(
              (l) => l['resource'] === 'pods' && Number(l['retry_in_ms']) >= minBackoffMs,
            ),
          ),
        60_000,
        logsOf,
      );

    // Down: the maps keep the last known state; a covered pair is enforced (first SYN dropped,
    // one handshake) and authenticates from it.
    const before = NODES.map((n) => ({
      cache: podIpcache(cluster, n.name),
      policy: policyEntries(cluster, n.name),
    }));
    expect(before[0]!.policy.length).toBeGreaterThan(0);
    cluster.flushEntries();
    const c0 = counters('node-a');
    const r = await cluster.connect('api', 'db', 8080, 10_000);
    expect(r, logsOf()).toMatchObject({ ok: true, reply: 'ok db' });
    expect(
      (counters('node-a')['drop_auth_missing'] ?? 0) - (c0['drop_auth_missing'] ?? 0),
    ).toBeGreaterThanOrEqual(1);
    expect(cluster.authEntries('node-a')).toHaveLength(1);
    NODES.forEach((n, i) => {
      expect(podIpcache(cluster, n.name)).toEqual(before[i]!.cache);
      expect(policyEntries(cluster, n.name)).toEqual(before[i]!.policy);
    });
    const apiId = before[0]!.cache.get(PODS.find((p) => p.name === 'api')!.ip)!;

    // Back, but the nodes cannot reach it: the changes they must learn by a re-list.
    const ports = NODES.map((_, i) => `port${i}`);
    const setPorts = (state: 'up' | 'down') => {
      for (const p of ports) cluster.topo.lab.exec(cp.ns, 'ip', ['link', 'set', p, state]);
    };
    await churn.stop();
    setPorts('down');
    let reusedIp = '';
    let reusedSa = '';
    try {
      await cp.kube.startApiServer();
      // The authenticated client pod goes: its entries must go with it.
      await cp.deletePod('demo', 'api');
      // An address reused by a pod of another account.
      const victim = await churn.victim();
      reusedSa = victim.sa === 'c0' ? 'c2' : 'c0';
      await cp.deletePod('demo', victim.name);
      churn.forget(victim.name);
      reusedIp = victim.ip;
      await cp.createPod({
        namespace: 'demo',
        name: `${tag}-reuse`,
        node: reusedIp.startsWith('10.90.1.') ? 'node-a' : 'node-b',
        serviceAccount: reusedSa,
        ips: [reusedIp],
      });
      rules = newRules;
      await cp.applyPolicy(POLICY, { mode: 'enforce', rules: rules.map(([f, t]) => rule(f, t)) });
      churn.start();
      await until(
        'churn while the nodes are cut off',
        () => churn!.creates - base.creates >= CREATES,
        60_000,
      );
      await churn.stop();
    } finally {
      setPorts('up');
    }
    const pods = await apiPods();
    expect(pods.some((p) => p.ip === reusedIp && p.sa === reusedSa)).toBe(true);
    expect(pods.some((p) => p.name === 'api')).toBe(false);

    await until(
      'both daemons re-listed the pods',
      () =>
        NODES.every((n) =>
          eventsSince(n.name, 'kubernetes_synced', mark).some((l) => l['resource'] === 'pods'),
        ),
      60_000,
      logsOf,
    );
    // Converged within a bound of the re-list (the batch window is 5 ms; the bound is generous).
    const convergeMs = await until(
      'the maps hold exactly what the API holds',
      () => NODES.every((n) => mismatch(n.name, pods) === ''),
      10_000,
      () => NODES.map((n) => mismatch(n.name, pods)).join('\n'),
    );
    await until(
      'status: watches synced',
      () => NODES.every((n) => statusSynced(n.name).every(Boolean)),
      30_000,
      logsOf,
    );
    for (const n of NODES) expect(syncedGauge(n.name, 'pods')).toBe(1);

    // No auth entry names an identity no pod has (the deleted client pod's entries went).
    const ids = new Set(podIpcache(cluster, 'node-a').values());
    expect(ids.has(apiId)).toBe(false);
    await until(
      'the deleted pod entries removed',
      () =>
        NODES.every((n) =>
          cluster.authEntries(n.name).every((e) => ids.has(e.localId) && ids.has(e.remoteId)),
        ),
      10_000,
      logsOf,
    );
    expect(cluster.authEntries('node-a')).toHaveLength(0);
    // The log line follows the map delete through the daemon's stdout pipe: wait for it. The pod's
    // identity leaving the node and its SVID going are both ways the GC learns of the deletion;
    // whichever the daemon saw first names the removal.
    await until(
      'the removal logged as entry_gc',
      () =>
        eventsSince('node-a', 'entry_gc', mark).some(
          (l) => l['reason'] === 'identity-removed' || l['reason'] === 'svid-removed',
        ),
      10_000,
      logsOf,
    );

    // Neither daemon exited or restarted.
    for (const n of NODES) {
      const d = cluster.daemons.get(n.name)!;
      expect(d.child.pid).toBe(pids[n.name]);
      expect(d.child.exitCode).toBeNull();
      expect(d.child.signalCode).toBeNull();
    }
    expect(churn.creates - base.creates).toBeGreaterThanOrEqual(CREATES);

    // The client pod comes back for the next round, and its pair is enforced again.
    await createDemoPod('api');
    return {
      creates: churn.creates - base.creates,
      deletes: churn.deletes - base.deletes,
      failed: churn.failed - base.failed,
      convergeMs,
    };
  }

  it('stopped (SIGTERM) mid-churn: last known state enforced while down, exact convergence after', async () => {
    const c = await outage('t', 'SIGTERM', 0, [
      ['web', 'db'],
      ['api', 'db'],
      ['c0', 'db'],
    ]);
    console.log(
      `SIGTERM: ${c.creates} creates, ${c.deletes} deletes, ${c.failed} failed requests; maps converged ${Math.round(c.convergeMs)} ms after the re-list was logged`,
    );
  }, 120_000);

  it('killed (SIGKILL) mid-churn and away longer than the informer back-off: the same', async () => {
    const c = await outage('k', 'SIGKILL', 4000, [
      ['api', 'db'],
      ['c1', 'c2'],
    ]);
    console.log(
      `SIGKILL: ${c.creates} creates, ${c.deletes} deletes, ${c.failed} failed requests; maps converged ${Math.round(c.convergeMs)} ms after the re-list was logged`,
    );
  }, 120_000);
});
