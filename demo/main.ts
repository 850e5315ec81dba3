/**
 * The meshauth demo: two simulated nodes in network namespaces, each with two pods and one
 * meshauthd (real BPF on the node uplink, real TLS 1.3 handshakes, SVIDs from the embedded
 * development CA). It walks through what the datapath and the daemons do and prints what the
 * kernel counters, the auth maps and the audit trail say. Everything is removed at the end.
 *
 *   npm run demo            (as root, after the set-up in scripts/demo.sh)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, mountBpffs } from './cluster.js';
import { howSynPassed, synReplays } from './narration.js';
import { buildTopology, NODES, PODS } from './topology.js';
import { NetnsLab } from '../test/helpers/netns.js';
import { startImpostor } from '../test/e2e/impostor.js';

const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const id = (name: string): string => PODS.find((p) => p.name === name)!.spiffeId;
const step = (n: number, title: string): void => console.log(`\n${bold(`${n}. ${title}`)}`);
const indent = (text: string): string =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => `     ${l}`)
    .join('\n');

type Counters = Record<string, number>;
function delta(before: Counters, after: Counters): string {
  const parts = Object.keys(after)
    .filter((k) => (after[k] ?? 0) !== (before[k] ?? 0))
    .map((k) => `${k} +${(after[k] ?? 0) - (before[k] ?? 0)}`);
  return parts.length ? parts.join(', ') : '(no change)';
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('demo: must run as root (it creates network namespaces and loads BPF programs)');
    process.exit(1);
  }
  const lab = new NetnsLab('demo');
  const workDir = mkdtempSync(join(tmpdir(), 'meshauth-demo-'));
  const unmount = mountBpffs(join(workDir, 'bpffs'));
  const cluster = new Cluster(buildTopology(lab), {
    workDir,
    bpffs: join(workDir, 'bpffs'),
    rules: [
      { name: 'web-to-db', from: id('web'), to: id('db') },
      { name: 'web-to-cache', from: id('web'), to: id('cache') },
    ],
  });
  const cleanup = async (): Promise<void> => {
    await cluster.stopAll();
    await lab.cleanup();
    unmount();
    rmSync(workDir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    step(1, 'Two nodes, four pods, one meshauthd per node');
    for (const n of NODES) {
      const pods = PODS.filter((p) => p.node === n.name)
        .map((p) => `${p.name} ${p.ip}`)
        .join(', ');
      console.log(`   ${n.name} (underlay ${n.underlayIp}): ${pods}`);
    }
    console.log('   policy: web -> db and web -> cache require mutual authentication; api -> cache does not');
    await cluster.init();
    await cluster.start('node-a');
    await cluster.start('node-b');
    for (const pod of ['db', 'cache']) cluster.serve(pod, 8080);
    await new Promise((r) => setTimeout(r, 300));
    console.log('   both daemons ready: BPF programs attached to eth0, maps pinned, handshake port 4250');

    step(2, 'web -> db: a required pair with no auth entry yet');
    let before = cluster.counters('node-a');
    const replaysBefore = synReplays(cluster);
    let r = await cluster.connect('web', 'db', 8080, 8000);
    const after = cluster.counters('node-a');
    console.log(`   connect: ${r.ok ? 'ok' : 'FAILED'} in ${r.ms} ms (reply "${r.reply ?? r.error}")`);
    console.log(`   node-a kernel counters: ${delta(before, after)}`);
    console.log('   the first SYN was dropped and signalled; meshauthd ran one mTLS handshake with node-b;');
    console.log(
      `   ${r.ok ? await howSynPassed(cluster, replaysBefore) : 'the connection did not complete'}.`,
    );
    console.log('   Entries now on both nodes:');
    for (const n of ['node-a', 'node-b']) console.log(`   ${n}:\n${indent(cluster.cli(n, ['entries']))}`);

    step(3, 'web -> db again: the entry is live, packets pass at kernel speed');
    before = cluster.counters('node-a');
    r = await cluster.connect('web', 'db', 8080, 8000);
    console.log(
      `   connect: ${r.ok ? 'ok' : 'FAILED'} in ${r.ms} ms; counters: ${delta(before, cluster.counters('node-a'))}`,
    );

    step(4, 'api -> cache: no policy asks for authentication');
    before = cluster.counters('node-a');
    r = await cluster.connect('api', 'cache', 8080, 8000);
    console.log(
      `   connect: ${r.ok ? 'ok' : 'FAILED'} in ${r.ms} ms; counters: ${delta(before, cluster.counters('node-a'))}`,
    );

    step(5, 'An impostor answers for node-b with a certificate from another CA');
    await cluster.stop('node-b', 'SIGTERM');
    const impostor = await startImpostor(cluster.topo, cluster, { node: 'node-b', kind: 'untrusted-ca' });
    before = cluster.counters('node-a');
    r = await cluster.connect('web', 'cache', 8080, 2500);
    await new Promise((res) => setTimeout(res, 500));
    console.log(
      `   connect web -> cache: ${r.ok ? 'ok (UNEXPECTED)' : `refused (${r.error})`}; counters: ${delta(before, cluster.counters('node-a'))}`,
    );
    console.log('   node-a audit trail, failures:');
    console.log(indent(cluster.cli('node-a', ['events', '--outcome', 'failure', '-n', '3'])));
    await impostor.stop();

    step(6, 'The real node-b daemon comes back; its pinned entries survived the restart');
    before = cluster.counters('node-b');
    await cluster.start('node-b');
    r = await cluster.connect('web', 'db', 8080, 8000);
    console.log(
      `   web -> db: ${r.ok ? 'ok' : 'FAILED'} in ${r.ms} ms; node-b counters: ${delta(before, cluster.counters('node-b'))}`,
    );
    r = await cluster.connect('web', 'cache', 8080, 8000);
    console.log(
      `   web -> cache: ${r.ok ? 'ok' : 'FAILED'} in ${r.ms} ms (authenticated now that node-b answers truthfully)`,
    );

    step(7, 'The audit trail is hash-chained');
    console.log(
      "   node-a's last 8 events in the order they were written (SEQ), the order the hash chain\n" +
        '   links them in. TIME is when each happened: a signal summary is dated at its first signal\n' +
        '   and written when its window closes, so it can be earlier than the rows written before it.',
    );
    console.log(indent(cluster.cli('node-a', ['events', '-n', '8'])));
    console.log(indent(cluster.cli('node-a', ['audit', 'verify'])));
    console.log(`\n${bold('Done.')} Removing namespaces, pins and files.`);
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
