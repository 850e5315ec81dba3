/**
 * The two-node demo topology (demo/topology.ts) with extra client workloads for the fault tests:
 * `clients` workloads c-0..c-(N-1) on node-a, each one more address in the web pod's namespace
 * (10.90.1.100 + i), so that a test can open as many distinct pairs as it likes from one process.
 * Also: reading a node's kernel auth map and audit trail by name, and the traffic fixture.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { Cluster, PACKAGE_ROOT, type ClusterOptions } from '../../demo/cluster.js';
import { buildTopology, PODS, TRUST_DOMAIN } from '../../demo/topology.js';
import { AuditStore, type StoredAuditEvent } from '../../src/audit/index.js';
import { buildInDemoLab } from '../helpers/demo-lab.js';
import type { NetnsLab } from '../helpers/netns.js';

export const idOf = (name: string): string => PODS.find((p) => p.name === name)!.spiffeId;
export const clientId = (i: number): string => `spiffe://${TRUST_DOMAIN}/ns/demo/sa/c-${i}`;
export const CLIENT_PREFIX = '10.90.1.';
export const CLIENT_FIRST = 100;
export const clientIp = (i: number): string => `${CLIENT_PREFIX}${CLIENT_FIRST + i}`;
/**
 * Traffic fixture arguments that connect from client workloads c-<first>, c-<first+1>, ... (each
 * from its own address, clientIp(i)); `--count` says how many.
 */
export const fromClients = (first = 0): string[] => [
  '--from',
  CLIENT_PREFIX,
  '--first',
  String(CLIENT_FIRST + first),
];
/** Every client workload, as a policy pattern. */
export const CLIENTS_PATTERN = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/c-*`;

// From the source tree, also when this module runs compiled (bench/load.ts under dist/).
const TRAFFIC = join(PACKAGE_ROOT, 'test', 'faults', 'fixtures', 'traffic.mjs');

export interface FaultCluster {
  cluster: Cluster;
  lab: NetnsLab;
  workDir: string;
  /** Starts the traffic fixture in a pod's namespace (killed by teardown). */
  traffic(pod: string, args: string[]): TrafficProcess;
  teardown(): Promise<void>;
}

export interface TrafficProcess {
  child: ChildProcess;
  /** JSON lines printed so far. */
  lines: Array<Record<string, unknown>>;
  /** Sends SIGTERM and resolves with the last line printed. */
  stop(): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

export async function startFaultCluster(
  prefix: string,
  opts: Omit<ClusterOptions, 'workDir' | 'bpffs'> & {
    clients?: number;
    /** Merged into a node's generated configuration (objects key by key, anything else replaced). */
    configPatch?: (node: string) => Record<string, unknown>;
    /** Edits the generated inventory (nodes, workloads) before the daemons start. */
    inventoryPatch?: (inv: {
      nodes: Array<Record<string, unknown>>;
      workloads: Array<Record<string, unknown>>;
    }) => void;
    startOrder?: string[];
    serve?: string[];
  },
): Promise<FaultCluster> {
  return buildInDemoLab(prefix, async ({ lab, workDir, bpffs, own }) => {
    const topo = buildTopology(lab);
    const cluster = own(new Cluster(topo, { sockops: false, ...opts, workDir, bpffs }));
    await cluster.init();
    const clients = opts.clients ?? 0;
    if (clients > 0 || opts.inventoryPatch) {
      const file = join(workDir, 'inventory.yaml');
      const inv = parse(readFileSync(file, 'utf8')) as {
        nodes: Array<Record<string, unknown>>;
        workloads: Array<Record<string, unknown>>;
      };
      opts.inventoryPatch?.(inv);
      for (let i = 0; i < clients; i++) {
        inv.workloads.push({
          name: `c-${i}`,
          spiffeId: clientId(i),
          node: 'node-a',
          ips: [clientIp(i)],
          selectors: ['k8s:ns:demo', `k8s:sa:c-${i}`],
        });
        lab.exec(topo.podNs['web']!, 'ip', ['addr', 'add', `${clientIp(i)}/24`, 'dev', 'eth0']);
      }
      writeFileSync(file, stringify(inv));
    }
    for (const node of ['node-a', 'node-b']) {
      const patch = opts.configPatch?.(node);
      if (!patch) continue;
      const file = cluster.configPath(node);
      writeFileSync(file, stringify(merge(parse(readFileSync(file, 'utf8')), patch)));
    }
    for (const node of opts.startOrder ?? ['node-a', 'node-b']) await cluster.start(node);
    for (const pod of opts.serve ?? ['db']) cluster.serve(pod, 8080);
    const traffic = (pod: string, args: string[]): TrafficProcess => {
      const child = lab.spawn(topo.podNs[pod]!, process.execPath, [TRAFFIC, ...args]);
      const lines: Array<Record<string, unknown>> = [];
      let buf = '';
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
          buf = buf.slice(i + 1);
        }
      });
      const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
      return {
        child,
        lines,
        exited,
        stop: async () => {
          child.kill('SIGTERM');
          await exited;
          return lines[lines.length - 1] ?? {};
        },
      };
    };
    await waitFor(() => portOpen(cluster, 'db'), 5000, 'db server listening');
    return { cluster, traffic };
  });
}

function merge(base: unknown, patch: unknown): unknown {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(base) || !isObj(patch)) return patch;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) out[k] = merge(base[k], v);
  return out;
}

function portOpen(cluster: Cluster, pod: string): boolean {
  const out = cluster.topo.lab.exec(cluster.topo.podNs[pod]!, 'ss', ['-ltnH', 'sport = :8080']);
  return out.trim().length > 0;
}

/** Polls `cond` every 50 ms until it holds or `timeoutMs` passed (then throws `what`). */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A pair by name, as the audit trail and the allocators' files spell it. */
export interface NamedEntry {
  localId: string;
  remoteId: string;
  node: string;
  expiryBootNs: bigint;
}

/**
 * The node's kernel auth map (read with bpftool, independently of the daemon), with the numeric
 * handles resolved through the allocators' files in the node's state directory. Handles the files
 * do not name come back as `?<n>` (an entry nobody can account for).
 */
export function namedAuthEntries(cluster: Cluster, node: string): NamedEntry[] {
  const state = cluster.stateDir(node);
  const ids = readIds(join(state, 'identities.json'));
  const nodes = readIds(join(state, 'nodes.json'));
  return cluster.authEntries(node).map((e) => ({
    localId: ids.get(e.localId) ?? `?${e.localId}`,
    remoteId: ids.get(e.remoteId) ?? `?${e.remoteId}`,
    node: e.remoteNode === 0 ? '' : (nodes.get(e.remoteNode) ?? `?${e.remoteNode}`),
    expiryBootNs: e.expiryBootNs,
  }));
}

function readIds(file: string): Map<number, string> {
  const f = JSON.parse(readFileSync(file, 'utf8')) as { ids: Record<string, number> };
  return new Map(Object.entries(f.ids).map(([k, v]) => [v, k]));
}

/** Every event of a node's audit trail, and whether its hash chain verifies (read-only). */
export function readAudit(cluster: Cluster, node: string): { events: StoredAuditEvent[]; verified: boolean } {
  // Where the node's configuration puts it (a test may move it to a filesystem of its own).
  const config = parse(readFileSync(cluster.configPath(node), 'utf8')) as { audit: { path: string } };
  const store = AuditStore.open({ path: config.audit.path, readonly: true });
  try {
    const events: StoredAuditEvent[] = [];
    let after = 0;
    for (;;) {
      const page = store.query({ afterSeq: after, limit: 5000 });
      if (page.length === 0) break;
      events.push(...page);
      after = page[page.length - 1]!.seq;
    }
    return { events, verified: store.verifyChain().ok };
  } finally {
    store.close();
  }
}

/**
 * Kernel entries that no `entry-written` audit event of the same pair accounts for: the
 * entries that would have been let in without a verified handshake on record. The entry is
 * written before its audit event is committed (the writer batches), so a live daemon can show an
 * entry for a few milliseconds before its record: callers poll until the list is empty, and an
 * entry that is really unearned stays in the list.
 */
export function unearnedEntries(cluster: Cluster, node: string): NamedEntry[] {
  const { events } = readAudit(cluster, node);
  const written = new Set(
    events
      .filter((e) => e.type === 'entry-written' && e.outcome === 'success')
      .map((e) => `${e.localId}|${e.remoteId}|${e.node}`),
  );
  return namedAuthEntries(cluster, node).filter((e) => !written.has(`${e.localId}|${e.remoteId}|${e.node}`));
}

/** Port a node's Prometheus endpoint listens on inside its namespace (see `metricsPatch`). */
export const METRICS_PORT = 9464;
/** A `configPatch` that turns a node's Prometheus endpoint on (127.0.0.1 in its namespace). */
export const metricsPatch = { metrics: { listen: `127.0.0.1:${METRICS_PORT}` } };

/**
 * A node's Prometheus samples (name{labels} → value), scraped from inside its namespace with a
 * short Node.js fetch, so that nothing beyond Node is needed. Needs `metricsPatch` applied.
 */
export function scrapeMetrics(cluster: Cluster, node: string): Map<string, number> {
  const text = cluster.topo.lab.exec(
    cluster.topo.nodeNs[node]!,
    process.execPath,
    [
      '-e',
      `fetch('http://127.0.0.1:${METRICS_PORT}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ],
    { timeoutMs: 30_000 },
  );
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Least-squares slope of `ys` over `xs` (units of y per unit of x); 0 for fewer than 2 points. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
