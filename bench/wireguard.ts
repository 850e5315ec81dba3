/**
 * WireGuard transport benchmark: pod-to-pod throughput, latency and CPU cost over the tunnel
 * (wireguard-go, or the kernel module where present) versus the same pods routed in clear over
 * the same underlay link, in the same run. Everything runs inside private network namespaces.
 *
 *   node dist/bench/wireguard.js [--seconds 5] [--rtt 2000]
 *
 * Needs root, iperf3 and wireguard-go (or the kernel module).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { WireguardManager, processCpuSeconds } from '../src/wireguard/index.js';
import type { NetnsLab } from '../test/helpers/netns.js';
import {
  peerOf,
  routeOverUnderlay,
  startEcho,
  twoNodeLab,
  type LabNode,
} from '../test/integration/wireguard/two-nodes.js';

const ECHO_PORT = 7000;
const IPERF_PORT = 5201;

interface PathResult {
  path: string;
  throughputGbit: number;
  retransmits: number;
  bytes: number;
  rttUs: { p50: number; p99: number; mean: number; n: number };
  /** CPU seconds of both wireguard-go daemons during the throughput run (0 on the plain path). */
  wgCpuSec: number;
  /** Whole-machine busy CPU seconds during the throughput run (shared machine: noisy). */
  systemBusySec: number;
}

const RTT_CLIENT = `
const net = require('node:net');
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const s = net.connect({ host, port }, () => { s.setNoDelay(true); next(); });
const msg = Buffer.alloc(64, 120);
const samples = [];
let i = 0, got = 0, t0 = 0n;
function next() { got = 0; t0 = process.hrtime.bigint(); s.write(msg); }
s.on('data', (d) => {
  got += d.length;
  if (got < msg.length) return;
  if (i++ >= 50) samples.push(Number(process.hrtime.bigint() - t0) / 1000); // first 50 warm up
  if (samples.length < n) next(); else { s.end(); done(); }
});
function done() {
  samples.sort((a, b) => a - b);
  const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))];
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  process.stdout.write(JSON.stringify({ p50: q(0.5), p99: q(0.99), mean, n: samples.length }));
}
`;

function systemBusySeconds(): number {
  const cpu =
    readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal ...: busy = all - idle - iowait
  const total = cpu.reduce((a, b) => a + b, 0);
  return (total - (cpu[3] ?? 0) - (cpu[4] ?? 0)) / 100;
}

function wgCpu(managers: WireguardManager[]): number {
  let sum = 0;
  for (const m of managers) {
    const pid = m.pid();
    if (pid !== undefined) sum += processCpuSeconds(pid);
  }
  return sum;
}

async function measure(
  lab: NetnsLab,
  a: LabNode,
  b: LabNode,
  path: string,
  seconds: number,
  rttN: number,
  managers: WireguardManager[],
): Promise<PathResult> {
  const server = lab.spawn(b.podNs, 'iperf3', ['-s', '-1', '-B', b.podIp, '-p', String(IPERF_PORT)]);
  await new Promise((r) => setTimeout(r, 300));
  const cpu0 = wgCpu(managers);
  const sys0 = systemBusySeconds();
  const out = lab.exec(
    a.podNs,
    'iperf3',
    ['-c', b.podIp, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'],
    {
      timeoutMs: (seconds + 20) * 1000,
    },
  );
  const sys1 = systemBusySeconds();
  const cpu1 = wgCpu(managers);
  await new Promise<void>((resolve) =>
    server.exitCode !== null ? resolve() : server.once('exit', () => resolve()),
  );
  const j = JSON.parse(out) as {
    end: {
      sum_sent: { bytes: number; retransmits?: number };
      sum_received: { bits_per_second: number; bytes: number };
    };
  };
  const rtt = JSON.parse(
    lab.exec(a.podNs, process.execPath, ['-e', RTT_CLIENT, b.podIp, String(ECHO_PORT), String(rttN)], {
      timeoutMs: 60_000,
    }),
  ) as PathResult['rttUs'];
  return {
    path,
    throughputGbit: j.end.sum_received.bits_per_second / 1e9,
    retransmits: j.end.sum_sent.retransmits ?? 0,
    bytes: j.end.sum_received.bytes,
    rttUs: rtt,
    wgCpuSec: cpu1 - cpu0,
    systemBusySec: sys1 - sys0,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { seconds: { type: 'string', default: '5' }, rtt: { type: 'string', default: '2000' } },
  });
  const seconds = Number(values.seconds);
  const rttN = Number(values.rtt);
  const { lab, a, b } = twoNodeLab('wgb');
  const managers: WireguardManager[] = [];
  try {
    await startEcho(lab, b, ECHO_PORT);
    routeOverUnderlay(lab, a, b);
    const plain = await measure(lab, a, b, 'plain (routed over the underlay veth)', seconds, rttN, []);

    const ma = await WireguardManager.open({ stateDir: a.stateDir, interfaceName: a.wgIf, netns: a.ns });
    managers.push(ma);
    const mb = await WireguardManager.open({ stateDir: b.stateDir, interfaceName: b.wgIf, netns: b.ns });
    managers.push(mb);
    await ma.reconcile([peerOf(b, mb.publicKey)]);
    await mb.reconcile([peerOf(a, ma.publicKey)]);
    const tunnel = await measure(
      lab,
      a,
      b,
      `WireGuard (${ma.mode}${ma.mode === 'userspace' ? ', wireguard-go' : ''})`,
      seconds,
      rttN,
      managers,
    );

    const rows = [plain, tunnel];
    const perGb = (s: number, bytes: number): string =>
      bytes === 0 ? 'n/a' : (s / (bytes / 1e9)).toFixed(2);
    console.log(`# WireGuard pod-to-pod benchmark (iperf3 -t ${seconds}, ${rttN} TCP round trips of 64 B)`);
    console.log(
      '| path | throughput Gbit/s | retransmits | RTT p50 µs | RTT p99 µs | wireguard-go CPU s/GB | machine busy CPU s/GB |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rows) {
      console.log(
        `| ${r.path} | ${r.throughputGbit.toFixed(2)} | ${r.retransmits} | ${r.rttUs.p50.toFixed(0)} | ${r.rttUs.p99.toFixed(0)} | ${perGb(r.wgCpuSec, r.bytes)} | ${perGb(r.systemBusySec, r.bytes)} |`,
      );
    }
    console.log(
      `tunnel/plain: throughput x${(tunnel.throughputGbit / plain.throughputGbit).toFixed(2)}, RTT p50 x${(tunnel.rttUs.p50 / plain.rttUs.p50).toFixed(2)}`,
    );
    console.log(JSON.stringify({ plain, tunnel }));
  } finally {
    for (const m of managers) await m.destroy().catch(() => undefined);
    await lab.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
