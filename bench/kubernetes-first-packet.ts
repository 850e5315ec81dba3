/**
 * A new pod's way to its first authenticated packet in Kubernetes mode: the two-node namespace
 * cluster (demo/topology.ts), both meshauthd with inventory and policy from a real kube-apiserver
 * (test/helpers/kube-cluster.ts: etcd + API server in a control-plane namespace the nodes reach
 * over a bridge, daemons with meshauthd's ClusterRole), a MutualAuthPolicy in enforce mode from
 * web to every service account of its namespace.
 *
 * Each round, a client in the web pod (node-a) is already sending to 10.90.2.11, an address in
 * node-b's pod CIDR that no pod holds yet (dropped as unresolved). A pod with a service account
 * never seen before is created on node-b and its status.podIPs written with that address, as the
 * kubelet does. Measured from the response to the status write (watch event -> inventory ->
 * ipcache on both nodes -> drop + signal, or pre-authentication -> handshake -> entries):
 * - UDP rounds: to the arrival of the first datagram (one every 2 ms), the first packet node-a let
 *   through as authenticated;
 * - TCP rounds: to the client's connection being established, its SYN retransmissions (shortened
 *   by sock_ops to datapath.synRto) included: what an application sees.
 * Variants: first-SYN path (default config) and pre-authentication (auth.preauthenticate: the
 * daemon authenticates the pair as soon as the pod is known, before a packet asks for it).
 *
 *   node dist/bench/kubernetes-first-packet.js [--rounds 20]     (rounds of each kind; root;
 *                                                                 needs scripts/build-kubernetes.sh)
 * MESHAUTH_BENCH_SMOKE=1: first-SYN path only, 2 rounds of each kind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, mountBpffs } from '../demo/cluster.js';
import { buildTopology, NODES, PODS } from '../demo/topology.js';
import { KubeControlPlane } from '../test/helpers/kube-cluster.js';
import { kubeBinDir } from '../test/helpers/kube-apiserver.js';
import { cgroup2Root, NetnsLab, run } from '../test/helpers/netns.js';
import { benchArgs } from './args.js';

const SMOKE = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
const TARGET = '10.90.2.11';

/**
 * Probes, each run with `node -e` in a pod namespace; each prints "ready" once it is under way and
 * then the wall-clock time (ms, sub-ms precision) of what it waits for.
 *
 * TCP_CONNECT (web): connection attempts until one is established, each left to the kernel's SYN
 * retransmissions. UDP_SEND (web): a datagram every 2 ms; UDP_RECEIVE (the target address's pod):
 * the arrival of the first one.
 */
const TCP_CONNECT = `
const net = require('node:net');
const wall = () => performance.timeOrigin + performance.now();
let ready = false;
const attempt = () => {
  const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
  s.once('connect', () => { console.log(JSON.stringify({ at: wall() })); process.exit(0); });
  s.once('error', () => setTimeout(attempt, 5));
  if (!ready) { ready = true; setTimeout(() => console.log('ready'), 20); }
};
attempt();
`;
const UDP_SEND = `
const s = require('node:dgram').createSocket('udp4');
const b = Buffer.from('meshauth-bench');
setInterval(() => s.send(b, Number(process.argv[2]), process.argv[1]), 2);
console.log('ready');
`;
const UDP_RECEIVE = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', () => { console.log(JSON.stringify({ at: performance.timeOrigin + performance.now() })); process.exit(0); });
s.bind(Number(process.argv[1]), () => console.log('ready'));
`;

interface Probe {
  out(): string;
  exited: Promise<void>;
  kill(): Promise<void>;
}

function spawnProbe(lab: NetnsLab, ns: string, code: string, args: string[], cgroup?: string): Probe {
  const child = lab.spawn(ns, 'node', ['-e', code, ...args], cgroup ? { cgroup } : {});
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    out: () => out,
    exited,
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** The wall-clock time a probe printed, once it exits (at most 15 s). */
async function probeTime(p: Probe, what: string): Promise<number> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([
    p.exited,
    new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: nothing in 15 s`)), 15_000))),
  ]).finally(() => clearTimeout(t));
  const line = p
    .out()
    .split('\n')
    .find((l) => l.startsWith('{'));
  if (!line) throw new Error(`${what}: probe printed ${JSON.stringify(p.out())}`);
  return (JSON.parse(line) as { at: number }).at;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

async function until(what: string, fn: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!fn()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Whether node's kernel ipcache holds a /32 for the address (bpftool, independent of our binding). */
function ipcacheHasHost(cluster: Cluster, node: string, ip: string): boolean {
  const rows = JSON.parse(
    run('bpftool', ['-j', 'map', 'dump', 'pinned', join(cluster.pinDir(node), 'ma_ipcache')]),
  ) as Array<{ formatted?: { key: { prefixlen: number; addr: number[] } } }>;
  const want = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, ...ip.split('.').map(Number)].join(',');
  return rows.some((r) => r.formatted?.key.prefixlen === 128 && r.formatted.key.addr.join(',') === want);
}

async function variant(
  bin: string,
  opts: { preauthenticate: boolean; rounds: number },
): Promise<{ udp: number[]; tcp: number[]; handshakes: number; failed: string }> {
  const lab = new NetnsLab('kfp');
  const workDir = mkdtempSync(join(tmpdir(), 'meshauth-bench-kfp-'));
  const bpffs = join(workDir, 'bpffs');
  let unmount: () => void = () => {};
  let cluster: Cluster | undefined;
  try {
    unmount = mountBpffs(bpffs);
    const topo = buildTopology(lab);
    const kubeconfig = (node: string) => join(workDir, `${node}.kubeconfig`);
    cluster = new Cluster(topo, {
      workDir,
      bpffs,
      rules: [],
      preauthenticate: opts.preauthenticate,
      extraConfig: (node) => ({
        inventory: { source: 'kubernetes' },
        policy: { source: 'kubernetes' },
        kubernetes: { kubeconfig: kubeconfig(node) },
      }),
    });
    await cluster.init();
    const cp = await KubeControlPlane.start({
      lab,
      bin,
      nodes: NODES.map((n) => ({
        name: n.name,
        ns: topo.nodeNs[n.name]!,
        internalIp: n.underlayIp,
        podCidrs: [n.podCidr],
      })),
      kubeconfigPath: kubeconfig,
    });
    const web = PODS.find((p) => p.name === 'web')!;
    await cp.createPod({
      namespace: 'demo',
      name: 'web',
      node: web.node,
      serviceAccount: 'web',
      ips: [web.ip],
    });
    await cp.applyPolicy('web-to-demo', {
      mode: 'enforce',
      rules: [{ name: 'web', from: { namespace: 'demo', serviceAccount: 'web' }, to: { namespace: 'demo' } }],
    });
    for (const n of NODES) await cluster.start(n.name, 60_000);
    cluster.serve('db', 8080);
    const c = cluster;
    const podCgroup = join(cgroup2Root(), `${lab.tag}-node-a-pods`);
    const udp: number[] = [];
    const tcp: number[] = [];
    // Alternate: a UDP round, then a TCP round (each probe alone, so neither triggers the other's
    // handshake).
    for (let i = 0; i < 2 * opts.rounds; i++) {
      const kind = i % 2 === 0 ? 'UDP' : 'TCP';
      await until(
        `${TARGET} unresolved`,
        () => NODES.every((n) => !ipcacheHasHost(c, n.name, TARGET)),
        10_000,
      );
      const probes =
        kind === 'UDP'
          ? [
              spawnProbe(lab, topo.podNs['db']!, UDP_RECEIVE, ['9999']),
              spawnProbe(lab, topo.podNs['web']!, UDP_SEND, [TARGET, '9999'], podCgroup),
            ]
          : [spawnProbe(lab, topo.podNs['web']!, TCP_CONNECT, [TARGET, '8080'], podCgroup)];
      try {
        await until('probes ready', () => probes.every((p) => p.out().includes('ready')), 10_000);
        const written =
          performance.timeOrigin +
          (await cp.createPod({
            namespace: 'demo',
            name: `db-${i}`,
            node: 'node-b',
            serviceAccount: `db-${i}`,
            ips: [TARGET],
          }));
        (kind === 'UDP' ? udp : tcp).push((await probeTime(probes[0]!, `round ${i} ${kind}`)) - written);
      } finally {
        for (const p of probes) await p.kill();
      }
      await cp.deletePod('demo', `db-${i}`);
    }
    const failed = new Map<string, number>();
    for (const l of cluster.logs('node-a', 'auth_failed')) {
      const reason = String(l['reason']);
      failed.set(reason, (failed.get(reason) ?? 0) + 1);
    }
    return {
      udp,
      tcp,
      handshakes: cluster.logs('node-a', 'auth_succeeded').length,
      failed: [...failed].map(([r, n]) => `${r} ${n}`).join(', ') || 'none',
    };
  } finally {
    await cluster?.stopAll();
    await lab.cleanup();
    unmount();
    rmSync(workDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = benchArgs(
    {
      name: 'kubernetes-first-packet',
      summary:
        "A new pod's way to its first authenticated packet in Kubernetes mode (two-node namespace\n" +
        'cluster, real kube-apiserver), from the status.podIPs write: first UDP datagram let through\n' +
        'and TCP connection established, with and without pre-authentication.',
      notes:
        'Needs root and scripts/build-kubernetes.sh. MESHAUTH_BENCH_SMOKE=1: first-SYN path only, 2 rounds.',
    },
    {
      rounds: {
        type: 'string',
        value: 'n',
        default: SMOKE ? '2' : '20',
        number: { min: 1, integer: true },
        help: 'rounds of each kind',
      },
    },
  );
  const rounds = Number(values.rounds);
  const bin = kubeBinDir();
  if (!bin)
    throw new Error('bench kubernetes-first-packet: kube-apiserver not built (scripts/build-kubernetes.sh)');
  const variants: Array<[string, boolean]> = SMOKE
    ? [['first-SYN path', false]]
    : [
        ['first-SYN path', false],
        ['pre-authentication', true],
      ];
  const show = (xs: number[]): string =>
    `p50 ${pct(xs, 50).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms ` +
    `(min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`;
  for (const [name, preauthenticate] of variants) {
    const r = await variant(bin, { preauthenticate, rounds });
    console.log(
      `${name}, ${r.udp.length} pods, from the response to the status.podIPs write:\n` +
        `  first authenticated packet (UDP every 2 ms): ${show(r.udp)}\n` +
        `  TCP connection established (client retrying): ${show(r.tcp)}\n` +
        `  node-a handshakes: ${r.handshakes} succeeded; failed (then retried): ${r.failed}`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
