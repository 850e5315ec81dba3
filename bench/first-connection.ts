/**
 * First-connection latency of a cold identity pair, end to end, in the two-node demo topology
 * (network namespaces, real BPF on the node uplinks, two meshauthd with the dev CA): time for a
 * pod's TCP connect + one reply when the pair has no entry yet (SYN dropped, signal, handshake,
 * entry, SYN retransmitted), next to the same connect once the pair is authenticated, and next to
 * a pair policy does not cover. Every cold sample uses a fresh pair (entries flushed between rounds).
 *
 *   node dist/bench/first-connection.js [--rounds 5] [--json]
 *
 * Needs root. MESHAUTH_BENCH_SMOKE=1: one round.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Cluster, mountBpffs } from '../demo/cluster.js';
import { buildTopology, PODS } from '../demo/topology.js';
import { NetnsLab } from '../test/helpers/netns.js';

export interface FirstConnectionResult {
  rounds: number;
  coldMs: number[];
  warmMs: number[];
  uncoveredMs: number[];
  coldMedianMs: number;
  warmMedianMs: number;
  uncoveredMedianMs: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const id = (name: string): string => PODS.find((p) => p.name === name)!.spiffeId;

export async function runFirstConnectionBench(opts: { rounds: number }): Promise<FirstConnectionResult> {
  const lab = new NetnsLab('fc');
  const workDir = mkdtempSync(join(tmpdir(), 'meshauth-bench-fc-'));
  const unmount = mountBpffs(join(workDir, 'bpffs'));
  const cluster = new Cluster(buildTopology(lab), {
    workDir,
    bpffs: join(workDir, 'bpffs'),
    rules: [{ name: 'web-to-db', from: id('web'), to: id('db') }],
  });
  try {
    await cluster.init();
    await cluster.start('node-a');
    await cluster.start('node-b');
    cluster.serve('db', 8080);
    cluster.serve('cache', 8080);
    await new Promise((r) => setTimeout(r, 300));
    const r: FirstConnectionResult = {
      rounds: opts.rounds,
      coldMs: [],
      warmMs: [],
      uncoveredMs: [],
      coldMedianMs: 0,
      warmMedianMs: 0,
      uncoveredMedianMs: 0,
    };
    for (let i = 0; i < opts.rounds; i++) {
      cluster.flushEntries();
      const cold = await cluster.connect('web', 'db', 8080, 10_000);
      const warm = await cluster.connect('web', 'db', 8080, 10_000);
      const unc = await cluster.connect('web', 'cache', 8080, 10_000);
      if (!cold.ok || !warm.ok || !unc.ok)
        throw new Error(`bench: a connection failed: ${JSON.stringify({ cold, warm, unc })}`);
      r.coldMs.push(cold.ms);
      r.warmMs.push(warm.ms);
      r.uncoveredMs.push(unc.ms);
    }
    r.coldMedianMs = median(r.coldMs);
    r.warmMedianMs = median(r.warmMs);
    r.uncoveredMedianMs = median(r.uncoveredMs);
    return r;
  } finally {
    await cluster.stopAll();
    await lab.cleanup();
    unmount();
    rmSync(workDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rounds: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const r = await runFirstConnectionBench({ rounds: Number(values.rounds ?? (smoke ? 1 : 5)) });
  if (values.json) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(`first connection of a cold pair (pod connect + reply, ms; median of ${r.rounds} rounds)`);
  console.log(
    `  cold required pair   ${r.coldMedianMs.toFixed(1).padStart(8)}   samples ${r.coldMs.join(', ')}`,
  );
  console.log(
    `  warm required pair   ${r.warmMedianMs.toFixed(1).padStart(8)}   samples ${r.warmMs.join(', ')}`,
  );
  console.log(
    `  pair without policy  ${r.uncoveredMedianMs.toFixed(1).padStart(8)}   samples ${r.uncoveredMs.join(', ')}`,
  );
  console.log(`  cold / warm          ${(r.coldMedianMs / r.warmMedianMs).toFixed(1).padStart(8)}x`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
