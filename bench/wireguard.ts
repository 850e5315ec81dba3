/**
 * WireGuard transport benchmark: pod-to-pod throughput, latency and CPU cost over the tunnel
 * (wireguard-go, or the kernel module where present) versus the same pods routed in clear over
 * the same underlay link, in the same run. Everything runs inside private network namespaces.
 *
 *   node dist/bench/wireguard.js [--seconds 10] [--rtt 5000] [--connects 300] [--json]
 *   MESHAUTH_BENCH_SMOKE=1 node dist/bench/wireguard.js     (a few seconds; CI smoke run)
 *
 * Needs root, iperf3 and wireguard-go (or the kernel module).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { WireguardManager, processCpuSeconds } from '../src/wireguard/index.js';
import type { NetnsLab } from '../test/helpers/netns.js';
import {
  peerOf,
  routeOverUnderlay,
  startEcho,
  twoNodeLab,
  type LabNode,
} from '../test/integration/wireguard/two-nodes.js';
import { benchArgs } from './args.js';

const ECHO_PORT = 7000;
const IPERF_PORT = 5201;
/** WireGuard's default interface MTU (1500 minus its IPv6 + UDP + WireGuard overhead). */
const POD_MTU = 1420;

export interface WireguardBenchOptions {
  /** A tiny round (1 s of iperf3, a few hundred round trips): finishes in well under 20 s. */
  smoke: boolean;
  /** iperf3 duration per path, seconds (default 10; smoke 1). */
  seconds?: number;
  /** Timed 64-byte request/response round trips per path (default 5000; smoke 300). */
  rttSamples?: number;
  /** Timed fresh TCP connections per path (default 300; smoke 50). */
  connects?: number;
  /** Do not print the table. */
  quiet?: boolean;
}

export type LatencySummary = { p50: number; p90: number; p99: number; mean: number; n: number };

export type PathResult = {
  path: string;
  throughputGbit: number;
  retransmits: number;
  bytes: number;
  /** 64 B request/response on one TCP connection, µs. */
  rttUs: LatencySummary;
  /** TCP connect (SYN to established) to the pod, µs. */
  connectUs: LatencySummary;
  /** CPU seconds used by both wireguard-go daemons during the iperf3 run (0 on the plain path). */
  wgCpuSec: number;
  /** Whole-machine busy CPU seconds during the iperf3 run (all cores; noisy on a shared machine). */
  machineBusySec: number;
  /** iperf3's own CPU use of sender and receiver, percent of one core. */
  iperfCpuPercent: { sender: number; receiver: number };
};

export type WireguardBenchResult = {
  mode: string;
  /** `wireguard-go --version` of the binary on PATH (userspace mode), e.g. "v0.0.20250522". */
  wireguardGoVersion: string | undefined;
  seconds: number;
  cpus: number;
  loadAvg1mAtStart: number;
  plain: PathResult;
  tunnel: PathResult;
  ratio: { throughput: number; rttP50: number; connectP50: number };
  /** MTU of the pods' interfaces and of the WireGuard interface, on both paths. */
  podMtu: number;
  /** CPU seconds per GB moved, tunnel path: wireguard-go alone and the whole machine; plain: machine. */
  cpuSecPerGb: { wireguardGo: number; machineTunnel: number; machinePlain: number };
  commands: string[];
};

/** Runs in the client pod: `connects` fresh connections, then `n` timed round trips on one. */
const LATENCY_CLIENT = `
const net = require('node:net');
const host = process.argv[1], port = Number(process.argv[2]), n = Number(process.argv[3]), connects = Number(process.argv[4]);
const WARMUP = 50;
function summary(s) {
  s.sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length, n: s.length };
}
function connectOnce() {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ host, port }, () => { const us = Number(process.hrtime.bigint() - t0) / 1000; s.destroy(); resolve(us); });
    s.on('error', reject);
  });
}
function rtts() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => { s.setNoDelay(true); next(); });
    const msg = Buffer.alloc(64, 120);
    const samples = [];
    let i = 0, got = 0, t0 = 0n;
    function next() { got = 0; t0 = process.hrtime.bigint(); s.write(msg); }
    s.on('data', (d) => {
      got += d.length;
      if (got < msg.length) return;
      if (i++ >= WARMUP) samples.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (samples.length < n) next(); else { s.end(); resolve(samples); }
    });
    s.on('error', reject);
  });
}
(async () => {
  const c = [];
  for (let i = 0; i < connects; i++) c.push(await connectOnce());
  const r = await rtts();
  process.stdout.write(JSON.stringify({ connect: summary(c), rtt: summary(r) }));
})().catch((e) => { process.stderr.write(String(e)); process.exit(1); });
`;

function machineBusySeconds(): number {
  const cpu =
    readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal (guest is already in user): busy = first 8 - idle - iowait
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - (cpu[3] ?? 0) - (cpu[4] ?? 0)) / 100;
}

/** CPU seconds used so far by the given processes (the wireguard-go daemons). */
function cpuOf(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + processCpuSeconds(pid), 0);
}

/** Resolves once the server listens; `exited` settles when it is done with its one client. */
async function startIperfServer(lab: NetnsLab, b: LabNode): Promise<{ exited: Promise<void> }> {
  const proc = lab.spawn(b.podNs, 'iperf3', [
    '-s',
    '-1',
    '--forceflush',
    '-B',
    b.podIp,
    '-p',
    String(IPERF_PORT),
  ]);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('bench wireguard: iperf3 server did not start')), 10_000);
    proc.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) {
        clearTimeout(t);
        resolve();
      }
    });
    void exited.then(() => reject(new Error('bench wireguard: iperf3 server exited early')));
  });
  return { exited };
}

async function measure(
  lab: NetnsLab,
  a: LabNode,
  b: LabNode,
  path: string,
  o: { seconds: number; rttSamples: number; connects: number },
  /** pids whose CPU time is counted (the wireguard-go daemons; none on the plain path) */
  pids: readonly number[],
): Promise<PathResult> {
  // latency first, on an idle path
  const lat = JSON.parse(
    lab.exec(
      a.podNs,
      process.execPath,
      ['-e', LATENCY_CLIENT, b.podIp, String(ECHO_PORT), String(o.rttSamples), String(o.connects)],
      { timeoutMs: 120_000 },
    ),
  ) as { connect: LatencySummary; rtt: LatencySummary };

  const server = await startIperfServer(lab, b);
  const cpu0 = cpuOf(pids);
  const busy0 = machineBusySeconds();
  const out = lab.exec(
    a.podNs,
    'iperf3',
    ['-c', b.podIp, '-p', String(IPERF_PORT), '-t', String(o.seconds), '-J'],
    { timeoutMs: (o.seconds + 30) * 1000 },
  );
  const busy1 = machineBusySeconds();
  const cpu1 = cpuOf(pids);
  await server.exited;
  const j = JSON.parse(out) as {
    end: {
      sum_sent: { bytes: number; retransmits?: number };
      sum_received: { bits_per_second: number; bytes: number };
      cpu_utilization_percent?: { host_total: number; remote_total: number };
    };
  };
  return {
    path,
    throughputGbit: j.end.sum_received.bits_per_second / 1e9,
    retransmits: j.end.sum_sent.retransmits ?? 0,
    bytes: j.end.sum_received.bytes,
    rttUs: lat.rtt,
    connectUs: lat.connect,
    wgCpuSec: cpu1 - cpu0,
    machineBusySec: busy1 - busy0,
    iperfCpuPercent: {
      sender: j.end.cpu_utilization_percent?.host_total ?? 0,
      receiver: j.end.cpu_utilization_percent?.remote_total ?? 0,
    },
  };
}

/** Measures both paths in one run and (unless quiet) prints a table. */
export async function run(opts: WireguardBenchOptions): Promise<WireguardBenchResult> {
  const o = {
    seconds: opts.seconds ?? (opts.smoke ? 1 : 10),
    rttSamples: opts.rttSamples ?? (opts.smoke ? 300 : 5000),
    connects: opts.connects ?? (opts.smoke ? 50 : 300),
  };
  const loadAvg1mAtStart = loadavg()[0] ?? 0;
  const { lab, a, b } = twoNodeLab('wgb');
  const managers: WireguardManager[] = [];
  const teardown = async (): Promise<void> => {
    for (const m of managers.splice(0)) await m.destroy().catch(() => undefined);
    await lab.cleanup();
  };
  // interrupted: still remove the namespaces and the wireguard-go daemons before exiting
  const onSignal = (sig: NodeJS.Signals): void => {
    void teardown().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // pods get the tunnel's MTU on both paths (as a CNI would): no PMTU discovery in the numbers
    for (const n of [a, b]) {
      lab.exec(n.podNs, 'ip', ['link', 'set', 'dev', 'eth0', 'mtu', String(POD_MTU)]);
      lab.exec(n.ns, 'ip', ['link', 'set', 'dev', 'pod0', 'mtu', String(POD_MTU)]);
    }
    await startEcho(lab, b, ECHO_PORT);
    routeOverUnderlay(lab, a, b);
    const plain = await measure(lab, a, b, 'plain (routed in clear over the underlay veth)', o, []);

    const ma = await WireguardManager.open({
      stateDir: a.stateDir,
      interfaceName: a.wgIf,
      netns: a.ns,
      mtu: POD_MTU,
    });
    managers.push(ma);
    const mb = await WireguardManager.open({
      stateDir: b.stateDir,
      interfaceName: b.wgIf,
      netns: b.ns,
      mtu: POD_MTU,
    });
    managers.push(mb);
    await ma.reconcile([peerOf(b, mb.publicKey)]);
    await mb.reconcile([peerOf(a, ma.publicKey)]);
    const mode = ma.mode === 'userspace' ? 'wireguard-go' : 'kernel module';
    const wireguardGoVersion =
      ma.mode === 'userspace'
        ? /wireguard-go (v\S+)/.exec(execFileSync('wireguard-go', ['--version']).toString())?.[1]
        : undefined;
    const pids: number[] = [];
    if (ma.mode === 'userspace') {
      for (const m of [ma, mb]) {
        const pid = m.pid();
        if (pid === undefined)
          throw new Error(`bench wireguard: no wireguard-go process found for ${m.interfaceName}`);
        pids.push(pid);
      }
    }
    const tunnel = await measure(lab, a, b, `WireGuard (${mode})`, o, pids);

    const perGb = (sec: number, bytes: number): number => (bytes === 0 ? 0 : sec / (bytes / 1e9));
    const result: WireguardBenchResult = {
      mode,
      wireguardGoVersion,
      seconds: o.seconds,
      cpus: Number(readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? 0),
      loadAvg1mAtStart,
      plain,
      tunnel,
      ratio: {
        throughput: tunnel.throughputGbit / plain.throughputGbit,
        rttP50: tunnel.rttUs.p50 / plain.rttUs.p50,
        connectP50: tunnel.connectUs.p50 / plain.connectUs.p50,
      },
      cpuSecPerGb: {
        wireguardGo: perGb(tunnel.wgCpuSec, tunnel.bytes),
        machineTunnel: perGb(tunnel.machineBusySec, tunnel.bytes),
        machinePlain: perGb(plain.machineBusySec, plain.bytes),
      },
      podMtu: POD_MTU,
      commands: [
        `ip netns exec <pod-b> iperf3 -s -1 --forceflush -B ${b.podIp} -p ${IPERF_PORT}`,
        `ip netns exec <pod-a> iperf3 -c ${b.podIp} -p ${IPERF_PORT} -t ${o.seconds} -J`,
        `ip netns exec <pod-a> node -e <latency client> ${b.podIp} ${ECHO_PORT} ${o.rttSamples} ${o.connects}  (64 B echo round trips, fresh connects)`,
        'CPU: /proc/<wireguard-go pid>/stat utime+stime, /proc/stat busy time, before/after the iperf3 run',
      ],
    };
    if (opts.quiet !== true) printTable(result);
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await teardown();
  }
}

function printTable(r: WireguardBenchResult): void {
  const f0 = (n: number): string => n.toFixed(0);
  const cols: Array<[string, (p: PathResult) => string]> = [
    ['Gbit/s', (p) => p.throughputGbit.toFixed(2)],
    ['retr', (p) => String(p.retransmits)],
    ['RTT p50 µs', (p) => f0(p.rttUs.p50)],
    ['RTT p99 µs', (p) => f0(p.rttUs.p99)],
    ['connect p50 µs', (p) => f0(p.connectUs.p50)],
    ['wg-go CPU s', (p) => p.wgCpuSec.toFixed(2)],
    ['machine CPU s', (p) => p.machineBusySec.toFixed(2)],
    ['machine CPU s/GB', (p) => (p.bytes === 0 ? '-' : (p.machineBusySec / (p.bytes / 1e9)).toFixed(2))],
  ];
  const rows = [r.plain, r.tunnel];
  const pathW = Math.max(4, ...rows.map((p) => p.path.length));
  const widths = cols.map(([h, get]) => Math.max(h.length, ...rows.map((p) => get(p).length)));
  console.log(
    `WireGuard pod-to-pod, same run (iperf3 -t ${r.seconds}, ${r.plain.rttUs.n} × 64 B TCP round trips, ` +
      `${r.plain.connectUs.n} connects; ${r.cpus} CPUs, load ${r.loadAvg1mAtStart.toFixed(2)} at start)`,
  );
  if (r.wireguardGoVersion !== undefined) console.log(`  wireguard-go ${r.wireguardGoVersion}`);
  console.log(`  ${'path'.padEnd(pathW)}  ${cols.map(([h], i) => h.padStart(widths[i] ?? 0)).join('  ')}`);
  for (const p of rows) {
    console.log(
      `  ${p.path.padEnd(pathW)}  ${cols.map(([, get], i) => get(p).padStart(widths[i] ?? 0)).join('  ')}`,
    );
  }
  console.log(
    `  tunnel / plain: throughput ×${r.ratio.throughput.toFixed(2)}, RTT p50 ×${r.ratio.rttP50.toFixed(2)}, ` +
      `connect p50 ×${r.ratio.connectP50.toFixed(2)}`,
  );
  console.log(
    `  CPU per GB: wireguard-go ${r.cpuSecPerGb.wireguardGo.toFixed(2)} s; whole machine ` +
      `${r.cpuSecPerGb.machineTunnel.toFixed(2)} s tunnel vs ${r.cpuSecPerGb.machinePlain.toFixed(2)} s plain`,
  );
  for (const c of r.commands) console.log(`  $ ${c}`);
}

async function main(): Promise<void> {
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const { values } = benchArgs(
    {
      name: 'wireguard',
      summary:
        'WireGuard transport: pod-to-pod throughput, latency and CPU cost over the tunnel, next to the\n' +
        'same pods routed in clear over the same underlay link, in the same run.',
      notes:
        'Needs root, iperf3 and wireguard-go (or the kernel module). MESHAUTH_BENCH_SMOKE=1: a few seconds.',
    },
    {
      seconds: {
        type: 'string',
        value: 's',
        number: { min: 1 },
        help: 'length of each throughput run (default: 10)',
      },
      rtt: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'round trips timed (default: 5000)',
      },
      connects: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'TCP connects timed (default: 300)',
      },
      json: { type: 'boolean', default: false, help: 'print the results as JSON' },
    },
  );
  const r = await run({
    smoke,
    ...(values.seconds === undefined ? {} : { seconds: Number(values.seconds) }),
    ...(values.rtt === undefined ? {} : { rttSamples: Number(values.rtt) }),
    ...(values.connects === undefined ? {} : { connects: Number(values.connects) }),
    quiet: values.json === true,
  });
  if (values.json === true) console.log(JSON.stringify(r));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
