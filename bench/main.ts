/**
 * Runs every benchmark in turn, each in its own process (so CPU pinning and BPF state of one
 * cannot affect another), and prints their reports.
 *
 *   node dist/bench/main.js [name ...]        names: datapath handshake auth-latency first-connection audit wireguard kubernetes
 *                                                   kubernetes-first-packet relay channel load
 *
 * MESHAUTH_BENCH_SMOKE=1 makes every benchmark run a tiny round (the CI smoke run).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';

const ALL = [
  'datapath',
  'handshake',
  'auth-latency',
  'first-connection',
  'audit',
  'wireguard',
  'kubernetes',
  'kubernetes-first-packet',
  'relay',
  'channel',
  'load',
];
const here = dirname(fileURLToPath(import.meta.url));
const { positionals: wanted } = benchArgs(
  {
    name: 'main',
    summary:
      'Runs the named benchmarks (all when none is named) in turn, each in its own process, and\n' +
      `prints their reports. Names: ${ALL.join(', ')}.\n` +
      'Each benchmark has flags of its own: node dist/bench/<name>.js --help.',
    notes: 'MESHAUTH_BENCH_SMOKE=1 makes every benchmark run a tiny round (the CI smoke run).',
    positionals: '[name ...]',
  },
  {},
);
for (const w of wanted) {
  if (!ALL.includes(w)) {
    console.error(
      `bench main: unknown benchmark "${w}" (known: ${ALL.join(', ')}) (run node dist/bench/main.js --help for usage)`,
    );
    process.exit(2);
  }
}
let failed = 0;
for (const name of wanted.length ? wanted : ALL) {
  const script = join(here, `${name}.js`);
  if (!existsSync(script)) {
    console.error(`bench: ${name}: ${script} is missing (run the build first)`);
    failed++;
    continue;
  }
  console.log(`\n=== ${name} ===`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [script], { stdio: 'inherit', env: process.env });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.status !== 0) {
    console.error(`bench: ${name} failed (exit ${r.status ?? r.signal}) after ${secs} s`);
    failed++;
  } else {
    console.log(`(${name}: ${secs} s)`);
  }
}
process.exit(failed ? 1 : 0);
