/**
 * The handshake port under load, in the two-node fault topology (network namespaces, real BPF, two
 * meshauthd with the dev CA): N concurrent junk connections to node-b's handshake port from a third
 * address on the underlay (a third each idle, slowloris — one byte a second — and garbage — random
 * bytes every 100 ms —, each reopened as soon as the daemon closes it), while real pairs connect
 * through node-a. Reports the real pairs' completion time and rate unloaded and under load in the
 * same run (the rate under load as a fraction of the unloaded one), node-b's descriptors and
 * resident memory before and at most during the load, and what the junk saw.
 *
 *   node dist/bench/load.js [--connections 10000] [--pairs 20] [--json]
 *
 * Needs root. MESHAUTH_BENCH_SMOKE=1: 300 connections, 5 pairs. The assertions (bounded fds and
 * memory, every real pair authenticated) are test/faults/load.test.ts's.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PACKAGE_ROOT } from '../demo/cluster.js';
import {
  CLIENT_FIRST,
  CLIENT_PREFIX,
  CLIENTS_PATTERN,
  idOf,
  startFaultCluster,
  waitFor,
  type FaultCluster,
} from '../test/faults/harness.js';
import { benchArgs } from './args.js';

export interface LoadResult {
  connections: number;
  pairs: number;
  /** Time until the last of the real pairs connected, ms (each pair: first SYN dropped, handshake, retransmission). */
  unloadedMs: number;
  loadedMs: number;
  /** Real pairs per second, unloaded and under load, and loaded / unloaded. */
  unloadedRate: number;
  loadedRate: number;
  rateFraction: number;
  failedPairs: number;
  daemonFds: { before: number; max: number };
  daemonRssMiB: { before: number; max: number };
  /** The junk fixture's last line: connections made, closed by the daemon, failed. */
  junk: Record<string, number>;
}

const JUNK_ADDR = '192.168.90.50';

const rssKb = (pid: number): number =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

export async function runLoadBench(opts: { connections: number; pairs: number }): Promise<LoadResult> {
  const env: FaultCluster = await startFaultCluster('bload', {
    clients: opts.pairs * 2,
    rules: [{ name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') }],
  });
  try {
    const { cluster, lab } = env;
    lab.exec(cluster.topo.nodeNs['node-a']!, 'ip', ['addr', 'add', `${JUNK_ADDR}/24`, 'dev', 'eth0']);
    const pid = cluster.daemons.get('node-b')!.child.pid!;
    const batch = async (first: number): Promise<{ ms: number; failed: number }> => {
      const p = env.traffic('web', [
        'pairs',
        ...['--host', cluster.topo.pod('db').ip, '--port', '8080', '--from', CLIENT_PREFIX],
        ...['--first', String(CLIENT_FIRST + first), '--count', String(opts.pairs), '--every', '0'],
        ...['--timeout', '60000'],
      ]);
      await p.exited;
      return {
        ms: Math.max(...p.lines.map((l) => Number(l['ms']))),
        failed: p.lines.filter((l) => l['ok'] !== true).length,
      };
    };

    const unloaded = await batch(0);
    const fds0 = fdCount(pid);
    const rss0 = rssKb(pid);
    const junk = lab.spawn(cluster.topo.nodeNs['node-a']!, process.execPath, [
      join(PACKAGE_ROOT, 'test', 'faults', 'fixtures', 'traffic.mjs'),
      ...['junk', '--host', cluster.topo.node('node-b').underlayIp, '--port', '4250'],
      ...['--from', JUNK_ADDR, '--count', String(opts.connections)],
    ]);
    let junkOut = '';
    junk.stdout!.on('data', (d: Buffer) => (junkOut += d.toString()));
    await waitFor(() => junkOut.includes('"settled"'), 120_000, 'junk connections opened');
    let maxFds = fds0;
    let maxRss = rss0;
    const sampler = setInterval(() => {
      maxFds = Math.max(maxFds, fdCount(pid));
      maxRss = Math.max(maxRss, rssKb(pid));
    }, 100);
    const loaded = await batch(opts.pairs);
    clearInterval(sampler);
    const exited = new Promise((r) => junk.once('exit', r));
    junk.kill('SIGTERM');
    await exited;
    const rate = (ms: number) => Math.round((opts.pairs / ms) * 1000 * 10) / 10;
    return {
      connections: opts.connections,
      pairs: opts.pairs,
      unloadedMs: unloaded.ms,
      loadedMs: loaded.ms,
      unloadedRate: rate(unloaded.ms),
      loadedRate: rate(loaded.ms),
      rateFraction: Math.round((unloaded.ms / loaded.ms) * 100) / 100,
      failedPairs: unloaded.failed + loaded.failed,
      daemonFds: { before: fds0, max: maxFds },
      daemonRssMiB: { before: Math.round(rss0 / 1024), max: Math.round(maxRss / 1024) },
      junk: JSON.parse(junkOut.trim().split('\n').pop()!) as Record<string, number>,
    };
  } finally {
    await env.teardown();
  }
}

async function main(): Promise<void> {
  const { values } = benchArgs(
    {
      name: 'load',
      summary:
        'The handshake port under load: concurrent junk connections (idle, slowloris, garbage) to a\n' +
        "node's handshake port while real pairs connect; their completion time and rate, and the\n" +
        "node's descriptors and memory, unloaded and under load in the same run.",
      notes: 'Needs root. MESHAUTH_BENCH_SMOKE=1: 300 connections, 5 pairs.',
    },
    {
      connections: {
        type: 'string',
        value: 'n',
        default: '10000',
        number: { min: 1, integer: true },
        help: 'junk connections',
      },
      pairs: {
        type: 'string',
        value: 'n',
        default: '20',
        number: { min: 1, integer: true },
        help: 'real pairs timed',
      },
      json: { type: 'boolean', default: false, help: 'print the results as JSON' },
    },
  );
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const r = await runLoadBench({
    connections: smoke ? 300 : Number(values.connections),
    pairs: smoke ? 5 : Number(values.pairs),
  });
  if (values.json) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(
    `handshake port under ${r.connections} junk connections (idle, slowloris, garbage), ${r.pairs} real pairs`,
  );
  console.log(`  unloaded   last pair at ${String(r.unloadedMs).padStart(6)} ms   ${r.unloadedRate} pairs/s`);
  console.log(`  loaded     last pair at ${String(r.loadedMs).padStart(6)} ms   ${r.loadedRate} pairs/s`);
  console.log(`  loaded / unloaded rate  ${r.rateFraction}   failed pairs ${r.failedPairs}`);
  console.log(
    `  node-b fds ${r.daemonFds.before} -> max ${r.daemonFds.max}, RSS ${r.daemonRssMiB.before} -> max ${r.daemonRssMiB.max} MiB`,
  );
  console.log(`  junk ${JSON.stringify(r.junk)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
