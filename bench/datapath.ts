/**
 * Per-packet cost of the meshauth datapath, measured in the kernel with BPF_PROG_TEST_RUN (the
 * kernel runs the program `repeat` times on one crafted packet and reports the mean ns per run),
 * next to an empty tc program on the same machine in the same run.
 *
 *   npm run build && node dist/bench/datapath.js [--repeat 1000000] [--rounds 5] [--json]
 *       [--object-dir DIR]   (the BPF objects of another build, e.g. to compare versions)
 *
 * Needs root (loads BPF programs, pins under /sys/fs/bpf). MESHAUTH_BENCH_SMOKE=1 runs a tiny round.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../src/package-root.js';
import {
  AuthType,
  BpfObject,
  Datapath,
  buildArp,
  buildTcpSyn,
  ensurePinDir,
  IDENTITY_UNRESOLVED,
  testRun,
  wire,
} from '../src/datapath/index.js';
import { benchArgs } from './args.js';

export interface DatapathBenchOptions {
  /** Runs per measurement (kernel-side loop). */
  repeat: number;
  /** Measurements per case; the median is reported. */
  rounds: number;
  objectDir?: string;
}

export interface DatapathBenchCase {
  name: string;
  description: string;
  /** Median ns per packet. */
  nsPerPacket: number;
  /** nsPerPacket / empty program's nsPerPacket. */
  ratioVsEmpty: number;
  /** nsPerPacket - empty program's nsPerPacket. */
  overheadNs: number;
  samples: number[];
}

export interface DatapathBenchResult {
  repeat: number;
  rounds: number;
  cases: DatapathBenchCase[];
  command: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function runDatapathBench(opts: DatapathBenchOptions): Promise<DatapathBenchResult> {
  const bpfDir = opts.objectDir ?? join(packageRoot(), 'bpf');
  const pinDir = `/sys/fs/bpf/meshauth-bench-${randomBytes(4).toString('hex')}`;
  ensurePinDir(pinDir);
  const empty = BpfObject.load(join(bpfDir, 'bench_empty.bpf.o'));
  const stageObjects: BpfObject[] = [];
  let dp: Datapath | undefined;
  try {
    dp = Datapath.open({
      objectPath: join(bpfDir, 'meshauth.bpf.o'),
      pinDir,
      // one signal, then every miss is throttled for the whole run
      settings: { signalThrottleMs: 3_600_000, wireguardIfindex: 0, strictWireguard: false },
    });
    // A populated ipcache shaped like a node's: 1,000 pod CIDRs (/24, unresolved pod addresses of
    // 50 other nodes) and one host entry (/32) per workload address, so that lookups walk a
    // realistic trie and hash.
    for (let i = 0; i < 1000; i++) {
      const nodeId = 1 + (i % 50);
      dp.upsertIpcache({
        cidr: `10.${100 + (i >> 8)}.${i & 255}.0/24`,
        identity: IDENTITY_UNRESOLVED,
        nodeId,
      });
      dp.upsertIpcache({ cidr: `10.${100 + (i >> 8)}.${i & 255}.7/32`, identity: 1000 + i, nodeId });
    }
    dp.upsertIpcache({ cidr: '10.1.0.0/24', identity: IDENTITY_UNRESOLVED, nodeId: 0 });
    dp.upsertIpcache({ cidr: '10.1.0.1/32', identity: 10, nodeId: 0 });
    for (const [n, id] of [
      [2, 20],
      [3, 30],
      [4, 40],
    ] as const) {
      dp.upsertIpcache({ cidr: `10.${n}.0.0/24`, identity: IDENTITY_UNRESOLVED, nodeId: n });
      dp.upsertIpcache({ cidr: `10.${n}.0.7/32`, identity: id, nodeId: n });
    }
    dp.upsertIpcache({ cidr: 'fd00:1::1/128', identity: 10, nodeId: 0 });
    dp.upsertIpcache({ cidr: 'fd00:2::/64', identity: IDENTITY_UNRESOLVED, nodeId: 2 });
    dp.upsertIpcache({ cidr: 'fd00:2::7/128', identity: 20, nodeId: 2 });
    dp.setPolicy({ localId: 10, remoteId: 20 }, AuthType.SpiffeMtls);
    dp.setPolicy({ localId: 10, remoteId: 30 }, AuthType.SpiffeMtls);
    dp.auth.update(
      { localId: 10, remoteId: 20, remoteNode: 2, authType: 1 },
      { expiresAtMs: Date.now() + 3_600_000 },
    );

    const tcEgress = dp.programFd(wire.PROGRAMS.tcEgress);
    const emptyFd = empty.programFd('bench_empty');
    const hitPacket = buildTcpSyn({ src: '10.1.0.1', dst: '10.2.0.7' });
    // The same program cut after each stage (bpf/Makefile bench_stage_N.bpf.o, MA_BENCH_STAGE),
    // sharing the pinned maps: the per-stage cost of the hit packet.
    // Builds of other versions (--object-dir) without them run the other cases only.
    const stages = [
      { n: 1, name: 'hit@parse', description: 'hit packet, stop after parsing the addresses' },
      { n: 2, name: 'hit@ipcache', description: 'hit packet, stop after the two ipcache lookups' },
      { n: 3, name: 'hit@policy', description: 'hit packet, stop after the policy lookup' },
      { n: 4, name: 'hit@auth', description: 'hit packet, stop after the auth lookup (no counter)' },
      { n: 5, name: 'hit@cache', description: 'hit packet, verdict-cache hit, stop before the clock' },
    ].filter((st) => existsSync(join(bpfDir, `bench_stage_${st.n}.bpf.o`)));
    for (const st of stages)
      stageObjects.push(BpfObject.load(join(bpfDir, `bench_stage_${st.n}.bpf.o`), { pinDir }));
    // The program whose verdict cache never hits (MA_BENCH_CACHE_MISS): every packet costs what a
    // flow's first packet after a map change costs, or a packet of two flows that share a slot
    // and alternate on one CPU.
    const cacheMissPath = join(bpfDir, 'bench_cache_miss.bpf.o');
    const cacheMiss = existsSync(cacheMissPath) ? BpfObject.load(cacheMissPath, { pinDir }) : undefined;
    if (cacheMiss) stageObjects.push(cacheMiss);
    const cases: Array<{ name: string; description: string; fd: number; data: Buffer; expect: number }> = [
      {
        name: 'empty',
        description: 'empty tc program (baseline)',
        fd: emptyFd,
        data: buildTcpSyn({ src: '10.1.0.1', dst: '10.2.0.7' }),
        expect: 0,
      },
      {
        name: 'clock',
        description: "only bpf_ktime_get_boot_ns() (the expiry check's clock)",
        fd: empty.programFd('bench_clock'),
        data: hitPacket,
        expect: 0,
      },
      { name: 'not-ip', description: 'ARP: pass_not_ip', fd: tcEgress, data: buildArp(), expect: -1 },
      // every stage passes the hit packet (decide() returns 1: TC_ACT_UNSPEC)
      ...stages.map((st, i) => ({
        name: st.name,
        description: st.description,
        fd: stageObjects[i]!.programFd(wire.PROGRAMS.tcEgress),
        data: hitPacket,
        expect: -1,
      })),
      {
        name: 'no-policy',
        description: 'IPv4 pair without policy: pass_no_policy',
        fd: tcEgress,
        data: buildTcpSyn({ src: '10.1.0.1', dst: '10.4.0.7' }),
        expect: -1,
      },
      {
        name: 'hit',
        description: 'IPv4 required pair, live entry: pass_authenticated (steady flow: cache hit)',
        fd: tcEgress,
        data: hitPacket,
        expect: -1,
      },
      ...(cacheMiss
        ? [
            {
              name: 'hit-uncached',
              description: 'the same, verdict cache miss (new flow, or flows sharing a slot)',
              fd: cacheMiss.programFd(wire.PROGRAMS.tcEgress),
              data: hitPacket,
              expect: -1,
            },
          ]
        : []),
      {
        name: 'hit-ipv6',
        description: 'IPv6 required pair, live entry: pass_authenticated (cache hit)',
        fd: tcEgress,
        data: buildTcpSyn({ src: 'fd00:1::1', dst: 'fd00:2::7' }),
        expect: -1,
      },
      {
        name: 'external',
        description: 'IPv4 to an address outside the ipcache: pass_unknown_identity',
        fd: tcEgress,
        data: buildTcpSyn({ src: '10.1.0.1', dst: '192.0.2.1' }),
        expect: -1,
      },
      {
        name: 'miss',
        description: 'IPv4 required pair, no entry: drop + signal_throttled',
        fd: tcEgress,
        data: buildTcpSyn({ src: '10.1.0.1', dst: '10.3.0.7' }),
        expect: 4 /* TC_ACT_STOLEN */,
      },
    ];
    // Warm up (and send the one unthrottled signal of the miss case).
    for (const c of cases) {
      const r = testRun(c.fd, { data: c.data, repeat: 1000 });
      if (r.retval !== c.expect)
        throw new Error(`bench ${c.name}: program returned ${r.retval}, expected ${c.expect}`);
    }
    const samples = new Map<string, number[]>(cases.map((c) => [c.name, []]));
    // Interleave cases round by round so drift affects all of them alike.
    for (let round = 0; round < opts.rounds; round++) {
      for (const c of cases)
        samples.get(c.name)!.push(testRun(c.fd, { data: c.data, repeat: opts.repeat }).durationNs);
      await new Promise((r) => setImmediate(r));
    }
    const base = median(samples.get('empty')!);
    return {
      repeat: opts.repeat,
      rounds: opts.rounds,
      command:
        `node dist/bench/datapath.js --repeat ${opts.repeat} --rounds ${opts.rounds}` +
        (opts.objectDir === undefined ? '' : ` --object-dir ${opts.objectDir}`),
      cases: cases.map((c) => {
        const s = samples.get(c.name)!;
        const m = median(s);
        return {
          name: c.name,
          description: c.description,
          nsPerPacket: m,
          ratioVsEmpty: base > 0 ? m / base : NaN,
          overheadNs: m - base,
          samples: s,
        };
      }),
    };
  } finally {
    for (const o of stageObjects) o.close();
    dp?.close();
    empty.close();
    Datapath.removePins(pinDir);
  }
}

async function main(): Promise<void> {
  const { values } = benchArgs(
    {
      name: 'datapath',
      summary:
        'Per-packet cost of the meshauth datapath, measured in the kernel with BPF_PROG_TEST_RUN, next\n' +
        'to an empty tc program on the same machine in the same run.',
      notes: 'Needs root (loads BPF programs, pins under /sys/fs/bpf). MESHAUTH_BENCH_SMOKE=1: a tiny round.',
    },
    {
      repeat: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'runs of the program per measurement (default: 1000000)',
      },
      rounds: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'measurements per case (default: 5)',
      },
      'object-dir': {
        type: 'string',
        value: 'dir',
        help: 'BPF objects of another build, to compare versions',
      },
      json: { type: 'boolean', default: false, help: 'print the results as JSON' },
    },
  );
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const r = await runDatapathBench({
    repeat: Number(values.repeat ?? (smoke ? 10_000 : 1_000_000)),
    rounds: Number(values.rounds ?? (smoke ? 1 : 5)),
    objectDir: values['object-dir'],
  });
  if (values.json) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(
    `datapath per-packet cost, BPF_PROG_TEST_RUN (tc program, repeat ${r.repeat}, median of ${r.rounds} rounds)`,
  );
  console.log(
    `  ${'case'.padEnd(12)} ${'ns/pkt'.padStart(8)} ${'× empty'.padStart(8)} ${'+ns'.padStart(7)}  what`,
  );
  for (const c of r.cases) {
    console.log(
      `  ${c.name.padEnd(12)} ${c.nsPerPacket.toFixed(0).padStart(8)} ${c.ratioVsEmpty.toFixed(2).padStart(8)} ${c.overheadNs.toFixed(0).padStart(7)}  ${c.description}`,
    );
  }
  console.log(
    '  ipcache: 1,005 pod CIDRs + 1,006 host entries; miss = drop with the signal throttled (the flood case)',
  );
  console.log(`  $ ${r.command}`);
}

export { main };

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
