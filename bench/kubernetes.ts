/**
 * Kubernetes inventory at scale, against a real kube-apiserver (test/helpers/kube-apiserver.ts):
 *
 * 1. initial sync: N pods on M nodes already in the API server; time from starting the informers
 *    to the kernel ipcache and policy maps holding the compiled state (the daemon's start-up path:
 *    KubernetesInventorySource -> compileNodeState -> full map reconcile), and resident memory;
 * 2. churn: pods created and deleted at a steady rate; per created pod, the time from the
 *    response to its status.podIPs write to its address resolving to its identity in the kernel
 *    ipcache (the daemon's change path: informer event -> inventory -> compile -> diffMaps ->
 *    Datapath.applyDelta); process CPU over the churn; whole-map reconciliations during churn
 *    (expected 0).
 *
 *   node dist/bench/kubernetes.js        (root; needs scripts/build-kubernetes.sh)
 * MESHAUTH_BENCH_SMOKE=1: 200 pods on 4 nodes, 3 s of churn.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import {
  Datapath,
  diffMaps,
  ensurePinDir,
  IDENTITY_UNRESOLVED,
  type MapsState,
} from '../src/datapath/index.js';
import { KubernetesClient, KubernetesInventorySource, loadKubeConfig } from '../src/kubernetes/index.js';
import { compileNodeState, parsePolicy, type HandleAllocator, type NodeState } from '../src/policy/index.js';
import { KubeApiServer, kubeBinDir } from '../test/helpers/kube-apiserver.js';
import { benchArgs } from './args.js';

const SMOKE = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
const PODS = SMOKE ? 200 : 10_000;
const NODES = SMOKE ? 4 : 100;
const CHURN_SECONDS = SMOKE ? 3 : 20;
const CHURN_RATE = 50; // operations per second: half creations, half deletions
const SERVICE_ACCOUNTS = 50;
const TD = 'bench.test';
const OBJECT = fileURLToPath(new URL('../../bpf/meshauth.bpf.o', import.meta.url));

const nodeName = (i: number) => `node-${i}`;
const nodeIp = (i: number) => `192.168.${i >> 8}.${(i & 255) + 1}`;
const podCidr = (i: number) => `10.${100 + (i >> 8)}.${i & 255}.0/24`;
/** Pod k of node i: 10.(100 + i/256).(i%256).(k + 2), k < 250. */
const podIp = (i: number, k: number) => `10.${100 + (i >> 8)}.${i & 255}.${k + 2}`;

class Alloc implements HandleAllocator {
  private readonly ids = new Map<string, number>();
  idFor(k: string): number {
    let id = this.ids.get(k);
    if (id === undefined) this.ids.set(k, (id = this.ids.size + 1));
    return id;
  }
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++] as T);
    }),
  );
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function main(): Promise<void> {
  benchArgs(
    {
      name: 'kubernetes',
      summary:
        'Kubernetes inventory at scale against a real kube-apiserver: initial sync of N pods on M nodes\n' +
        'into the kernel maps, then pod churn (status.podIPs write -> kernel ipcache latency, CPU).',
      notes:
        'Needs root and scripts/build-kubernetes.sh. MESHAUTH_BENCH_SMOKE=1: 200 pods on 4 nodes, 3 s of churn.',
    },
    {},
  );
  const bin = kubeBinDir();
  if (!bin) throw new Error('bench kubernetes: kube-apiserver not built (scripts/build-kubernetes.sh)');
  const kube = await KubeApiServer.start(bin);
  const pinDir = `/sys/fs/bpf/meshauth-bench-k8s-${randomBytes(4).toString('hex')}`;
  let dp: Datapath | undefined;
  let source: KubernetesInventorySource | undefined;
  try {
    await kube.ensureNamespace('bench');
    const t0 = Date.now();
    await pool(
      Array.from({ length: NODES }, (_, i) => i),
      16,
      async (i) => {
        await kube.json('POST', '/api/v1/nodes', {
          body: {
            apiVersion: 'v1',
            kind: 'Node',
            metadata: { name: nodeName(i) },
            spec: { podCIDRs: [podCidr(i)] },
          },
        });
        await kube.json('PATCH', `/api/v1/nodes/${nodeName(i)}/status`, {
          contentType: 'application/merge-patch+json',
          body: { status: { addresses: [{ type: 'InternalIP', address: nodeIp(i) }] } },
        });
      },
    );
    const createPod = async (name: string, node: number, k: number): Promise<number> => {
      await kube.json('POST', '/api/v1/namespaces/bench/pods', {
        body: {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name },
          spec: {
            nodeName: nodeName(node),
            serviceAccountName: `sa-${k % SERVICE_ACCOUNTS}`,
            automountServiceAccountToken: false,
            containers: [{ name: 'c', image: 'example.invalid/none' }],
          },
        },
      });
      const ip = podIp(node, k);
      await kube.json('PATCH', `/api/v1/namespaces/bench/pods/${name}/status`, {
        contentType: 'application/merge-patch+json',
        body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } },
      });
      return performance.now();
    };
    const perNode = Math.ceil(PODS / NODES);
    const initial = Array.from({ length: PODS }, (_, j) => ({ node: j % NODES, k: Math.floor(j / NODES) }));
    await pool(initial, 32, async ({ node, k }) => void (await createPod(`p-${node}-${k}`, node, k)));
    console.log(
      `setup: ${NODES} nodes, ${PODS} pods (${perNode}/node) created in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );

    // ---- initial sync ----
    ensurePinDir(pinDir);
    dp = Datapath.open({ objectPath: OBJECT, pinDir });
    const client = new KubernetesClient(loadKubeConfig(kube.admin.kubeconfigPath), {
      group: 'meshauth.io',
      version: 'v1alpha1',
      plural: 'mutualauthpolicies',
    });
    const policy = parsePolicy(
      `rules:\n  - { name: r, from: "spiffe://${TD}/ns/bench/sa/sa-0", to: "spiffe://${TD}/ns/bench/*" }\n  - { name: s, from: "spiffe://${TD}/ns/bench/sa/sa-1", to: "spiffe://${TD}/ns/bench/sa/sa-2", mode: permissive }\n`,
    );
    const identities = new Alloc();
    const nodes = new Alloc();
    const maps = (s: NodeState): MapsState => ({
      ipcache: s.ipcache,
      policy: s.policy.map((p) => ({ ...p.key, authType: p.authType, mode: p.mode })),
    });
    const rssBefore = process.memoryUsage().rss;
    const s0 = performance.now();
    source = new KubernetesInventorySource({
      pods: client.podInformer(),
      nodes: client.nodeInformer(),
      conversion: {
        trustDomain: TD,
        spiffeIdTemplate: 'spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}',
        addressType: 'InternalIP',
      },
      logger: pino({ level: 'silent' }),
    });
    const inv = await source.start();
    const s1 = performance.now();
    const compile = (): NodeState =>
      compileNodeState({
        nodeName: nodeName(0),
        inventory: inv,
        policy,
        identities,
        nodes,
        unresolvedPodCidrs: true,
      });
    let applied = maps(compile());
    dp.syncIpcache(applied.ipcache);
    dp.syncPolicy(applied.policy);
    const s2 = performance.now();
    const rssAfter = process.memoryUsage().rss;
    console.log(
      `initial sync: ${PODS} pods on ${NODES} nodes: informers listed in ${(s1 - s0).toFixed(0)} ms, ` +
        `in the kernel maps after ${(s2 - s0).toFixed(0)} ms (ipcache ${applied.ipcache.length} entries, ` +
        `policy ${applied.policy.length}); RSS ${(rssBefore / 2 ** 20).toFixed(0)} -> ${(rssAfter / 2 ** 20).toFixed(0)} MiB`,
    );

    // ---- churn ----
    const fullBefore = dp.fullSyncs;
    const d = dp;
    let applyMs = 0;
    let applies = 0;
    inv.onChange(() => {
      const a = performance.now();
      const next = maps(compile());
      d.applyDelta(diffMaps(applied, next));
      applied = next;
      applyMs += performance.now() - a;
      applies++;
    });
    const pending = new Map<string, number>(); // ip -> write time
    const latencies: number[] = [];
    const poller = setInterval(() => {
      for (const [ip, at] of pending) {
        const e = d.lookupIpcache(ip);
        if (e && e.identity !== IDENTITY_UNRESOLVED) {
          latencies.push(performance.now() - at);
          pending.delete(ip);
        }
      }
    }, 1);
    const live = initial.map(({ node, k }) => ({ name: `p-${node}-${k}`, node, k }));
    let next = perNode; // k of newly created pods (fresh addresses)
    const cpu0 = process.cpuUsage();
    const c0 = performance.now();
    const ops: Array<Promise<void>> = [];
    for (let tick = 0; tick < CHURN_SECONDS * CHURN_RATE; tick++) {
      const due = c0 + (tick * 1000) / CHURN_RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (tick % 2 === 0) {
        const node = (tick / 2) % NODES;
        const k = next + Math.floor(tick / 2 / NODES);
        const ip = podIp(node, k % 248);
        const name = `c-${node}-${k}`;
        live.push({ name, node, k });
        ops.push(
          createPod(name, node, k % 248).then((at) => {
            pending.set(ip, at);
          }),
        );
      } else {
        const victim = live.splice(Math.floor(live.length / 3), 1)[0]!;
        ops.push(
          kube
            .json('DELETE', `/api/v1/namespaces/bench/pods/${victim.name}?gracePeriodSeconds=0`)
            .then(() => undefined),
        );
      }
    }
    await Promise.all(ops);
    const deadline = performance.now() + 10_000;
    while (pending.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    clearInterval(poller);
    const wall = performance.now() - c0;
    const cpu = process.cpuUsage(cpu0);
    next += CHURN_SECONDS * CHURN_RATE;
    console.log(
      `churn: ${CHURN_RATE}/s for ${CHURN_SECONDS} s (${latencies.length} creations measured, ${pending.size} never seen): ` +
        `status.podIPs write -> kernel ipcache p50 ${pct(latencies, 50).toFixed(1)} ms, p99 ${pct(latencies, 99).toFixed(1)} ms, ` +
        `max ${Math.max(...latencies).toFixed(1)} ms; map updates ${applies} (${(applyMs / Math.max(applies, 1)).toFixed(1)} ms each); ` +
        `process CPU ${(((cpu.user + cpu.system) / 1000 / wall) * 100).toFixed(0)} % of one core (bench client included); ` +
        `whole-map reconciliations during churn: ${dp.fullSyncs - fullBefore}`,
    );
  } finally {
    await source?.close();
    dp?.close();
    Datapath.removePins(pinDir);
    await kube.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
