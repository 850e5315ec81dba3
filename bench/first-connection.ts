/**
 * First-connection latency of a cold identity pair, end to end, in the two-node demo topology
 * (network namespaces, real BPF on the node uplinks, two meshauthd with the dev CA): time for a
 * pod's TCP connect + one reply when the pair has no entry yet (SYN dropped, signal, handshake,
 * entry, SYN retransmitted), next to the same connect once the pair is authenticated, and next to
 * a pair policy does not cover. Every cold sample uses a fresh pair (entries flushed between rounds).
 *
 * Runs both auth modes one after the other, each on its own pair of daemons: per-pair (one TLS
 * handshake per cold pair) and channel (a warm node channel whose proofs of both identities are
 * held: the cold pair costs no handshake, only the local entry and one pair message). One
 * discarded round first warms each mode (TLS contexts; in channel mode the channel and proofs).
 *
 *   node dist/bench/first-connection.js [--rounds 5] [--modes per-pair,channel] [--json]
 *
 * A mode may name a datapath.synRto to run with, and `noreplay` for datapath.synReplay off:
 * --modes per-pair,per-pair:noreplay,channel,channel:noreplay,channel:4ms:noreplay (the default
 * is the first four).
 *
 * Needs root. MESHAUTH_BENCH_SMOKE=1: one round.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Cluster, mountBpffs } from '../demo/cluster.js';
import { buildTopology, PODS } from '../demo/topology.js';
import { NetnsLab } from '../test/helpers/netns.js';
import { benchArgs } from './args.js';

export interface FirstConnectionResult {
  mode: 'per-pair' | 'channel';
  /** datapath.synRto, when not the daemon's default. */
  synRto?: string;
  /** datapath.synReplay. */
  synReplay: boolean;
  /** SYNs node-a replayed over the measured rounds (syn_replayed log lines). */
  replayed: number;
  rounds: number;
  coldMs: number[];
  /** Packets of the cold pair dropped for want of an entry, per cold sample, on node-a (client) and node-b. */
  coldDrops: Array<[number, number]>;
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

export async function runFirstConnectionBench(opts: {
  rounds: number;
  mode?: 'per-pair' | 'channel';
  synRto?: string;
  synReplay?: boolean;
}): Promise<FirstConnectionResult> {
  const synReplay = opts.synReplay ?? true;
  const mode = opts.mode ?? 'per-pair';
  const lab = new NetnsLab('fc');
  const workDir = mkdtempSync(join(tmpdir(), 'meshauth-bench-fc-'));
  const unmount = mountBpffs(join(workDir, 'bpffs'));
  const cluster = new Cluster(buildTopology(lab), {
    workDir,
    bpffs: join(workDir, 'bpffs'),
    rules: [{ name: 'web-to-db', from: id('web'), to: id('db') }],
    authMode: mode,
    ...(opts.synRto ? { synRto: opts.synRto } : {}),
    synReplay,
  });
  try {
    await cluster.init();
    await cluster.start('node-a');
    await cluster.start('node-b');
    cluster.serve('db', 8080);
    cluster.serve('cache', 8080);
    await new Promise((r) => setTimeout(r, 300));
    const r: FirstConnectionResult = {
      mode,
      ...(opts.synRto ? { synRto: opts.synRto } : {}),
      synReplay,
      replayed: 0,
      rounds: opts.rounds,
      coldMs: [],
      coldDrops: [],
      warmMs: [],
      uncoveredMs: [],
      coldMedianMs: 0,
      warmMedianMs: 0,
      uncoveredMedianMs: 0,
    };
    let replayedBefore = 0;
    for (let i = -1; i < opts.rounds; i++) {
      if (i === 0) replayedBefore = cluster.logs('node-a', 'syn_replayed').length;
      cluster.flushEntries();
      const drops = (): [number, number] => {
        const [a, b] = ['node-a', 'node-b'].map((node) => cluster.counters(node)['drop_auth_missing'] ?? 0);
        return [a!, b!];
      };
      const dropsBefore = drops();
      const cold = await cluster.connect('web', 'db', 8080, 10_000);
      const dropsAfter = drops();
      const coldDrops: [number, number] = [dropsAfter[0] - dropsBefore[0], dropsAfter[1] - dropsBefore[1]];
      const warm = await cluster.connect('web', 'db', 8080, 10_000);
      const unc = await cluster.connect('web', 'cache', 8080, 10_000);
      if (!cold.ok || !warm.ok || !unc.ok)
        throw new Error(`bench: a connection failed: ${JSON.stringify({ cold, warm, unc })}`);
      if (i < 0) continue; // warm-up round
      r.coldMs.push(cold.ms);
      r.coldDrops.push(coldDrops);
      r.warmMs.push(warm.ms);
      r.uncoveredMs.push(unc.ms);
    }
    r.replayed = cluster.logs('node-a', 'syn_replayed').length - replayedBefore;
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
  const { values } = benchArgs(
    {
      name: 'first-connection',
      summary:
        'First-connection latency of a cold identity pair, end to end, in the two-node demo topology,\n' +
        'next to the same connect once the pair is authenticated and a pair no policy covers.',
      notes:
        'A mode may name a datapath.synRto and `noreplay` (datapath.synReplay off), e.g.\n' +
        '--modes per-pair,per-pair:noreplay,channel,channel:4ms:noreplay.\n' +
        'Needs root. MESHAUTH_BENCH_SMOKE=1: one round.',
    },
    {
      rounds: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'cold samples per mode (default: 5)',
      },
      modes: {
        type: 'string',
        value: 'list',
        help: 'comma-separated auth modes (default: per-pair,per-pair:noreplay,channel,channel:noreplay)',
      },
      json: { type: 'boolean', default: false, help: 'print the results as JSON' },
    },
  );
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const rounds = Number(values.rounds ?? (smoke ? 1 : 5));
  const modes = (values.modes ?? 'per-pair,per-pair:noreplay,channel,channel:noreplay').split(',');
  const results: FirstConnectionResult[] = [];
  for (const spec of modes) {
    const [mode, ...rest] = spec.split(':');
    if (mode !== 'per-pair' && mode !== 'channel') throw new Error(`bench: unknown mode ${spec}`);
    const synReplay = !rest.includes('noreplay');
    const synRto = rest.find((t) => t !== 'noreplay');
    results.push(await runFirstConnectionBench({ rounds, mode, synReplay, ...(synRto ? { synRto } : {}) }));
  }
  if (values.json) {
    console.log(JSON.stringify(results));
    return;
  }
  for (const r of results) {
    const what =
      (r.mode === 'channel' ? 'auth.mode channel, warm channel' : 'auth.mode per-pair') +
      `, datapath.synRto ${r.synRto ?? 'default'}, synReplay ${r.synReplay ? 'on' : 'off'}`;
    console.log(
      `first connection of a cold pair, ${what} (pod connect + reply, ms; median of ${r.rounds} rounds)`,
    );
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
    console.log(`  SYNs replayed        ${String(r.replayed).padStart(8)}   of ${r.rounds} cold samples`);
    console.log(
      `  cold pair drops      ${' '.repeat(8)}   samples (node-a+node-b) ${r.coldDrops.map(([a, b]) => `${a}+${b}`).join(', ')}`,
    );
  }
  const label = (r: FirstConnectionResult): string =>
    `${r.mode}${r.synRto ? `:${r.synRto}` : ''}${r.synReplay ? '' : ':noreplay'}`;
  const base = results[0];
  for (const r of results.slice(1))
    if (base)
      console.log(
        `cold pair, ${label(r)} / ${label(base)}: ${(r.coldMedianMs / base.coldMedianMs).toFixed(2)} (medians, same run)`,
      );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
