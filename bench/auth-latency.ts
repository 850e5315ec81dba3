/**
 * Signal → entry latency: from the kernel dropping a packet of an unauthenticated pair (the
 * CLOCK_BOOTTIME stamp in the ring-buffer signal) to the auth map entry being written after a
 * real mTLS handshake with the peer daemon. Everything is real: the BPF program (run with
 * BPF_PROG_TEST_RUN on crafted SYNs), the ring buffer, the auth manager, TLS 1.3 with dev-CA
 * SVIDs, SPIFFE verification on both ends, the kernel map write. The peer's handshake server runs
 * in a child process on 127.0.0.1 (the other core).
 *
 *   node dist/bench/auth-latency.js [--pairs 1000] [--concurrency 8] [--json]
 *
 * Two runs over fresh pairs: "paced" (one drop at a time: the latency a lone cold pair sees) and
 * "burst" (all drops at once: queueing under a storm). Needs root. MESHAUTH_BENCH_SMOKE=1: 50 pairs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AuthCache, AuthManager, AuthReporter, type PairResolver } from '../src/auth/index.js';
import { HandshakeClient } from '../src/auth/handshake/index.js';
import { MemoryAuditSink } from '../src/audit/sink.js';
import { packageRoot } from '../src/package-root.js';
import {
  AuthType,
  bootNowNs,
  buildTcpSyn,
  Datapath,
  ensurePinDir,
  POLICY_ANY_REMOTE,
  wire,
} from '../src/datapath/index.js';
import type { AuthKey, AuthMap, AuthValue } from '../src/datapath/types.js';
import { DevCa } from '../src/identity/index.js';
import { silentLogger } from '../src/log.js';
import { benchArgs } from './args.js';

const TD = 'bench.local';
const LOCAL_IP = '10.200.0.1';
const LOCAL_ID = 1;
const PEER_NODE_ID = 1;
const localSpiffe = `spiffe://${TD}/ns/bench/sa/client`;
const remoteSpiffe = (i: number): string => `spiffe://${TD}/ns/bench/sa/w${i}`;
const remoteIp = (i: number): string => `10.201.${(i >> 8) & 255}.${i & 255}`;

export interface LatencyStats {
  pairs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Median of the client-side handshake time alone (connect → verified result). */
  handshakeP50Ms: number;
  wallMs: number;
}

export interface AuthLatencyResult {
  paced: LatencyStats;
  burst: LatencyStats;
  concurrency: number;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** An AuthMap that stamps every write with the boot clock, so latency = write - signal stamp. */
class StampingMap implements AuthMap {
  readonly writtenAt = new Map<string, bigint>();
  constructor(private readonly inner: AuthMap) {}
  lookup(key: AuthKey): AuthValue | undefined {
    return this.inner.lookup(key);
  }
  update(key: AuthKey, value: AuthValue): void {
    this.inner.update(key, value);
    this.writtenAt.set(`${key.localId}/${key.remoteId}`, bootNowNs());
  }
  delete(key: AuthKey): boolean {
    return this.inner.delete(key);
  }
  entries(): Iterable<[AuthKey, AuthValue]> {
    return this.inner.entries();
  }
  clockNowMs(): number {
    return this.inner.clockNowMs();
  }
  expiryClockMs(key: AuthKey): number | undefined {
    return this.inner.expiryClockMs(key);
  }
  expiriesClockMs(): Iterable<[AuthKey, number]> {
    return this.inner.expiriesClockMs();
  }
}

async function startPeer(
  caDir: string,
  ids: string[],
  workDir: string,
): Promise<{ child: ChildProcess; port: number }> {
  const idsFile = join(workDir, 'ids.txt');
  writeFileSync(idsFile, ids.join('\n'));
  const child = spawn(
    process.execPath,
    [
      join(packageRoot(), 'dist/bench/peer-server.js'),
      '--ca-dir',
      caDir,
      '--ids-file',
      idsFile,
      '--client-node',
      'bench-a',
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /\{"port":(\d+)\}/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`peer-server exited with ${code}`)));
  });
  return { child, port };
}

export async function runAuthLatencyBench(opts: {
  pairs: number;
  concurrency: number;
}): Promise<AuthLatencyResult> {
  const workDir = mkdtempSync(join(tmpdir(), 'meshauth-bench-lat-'));
  const pinDir = `/sys/fs/bpf/meshauth-bench-${process.pid}`;
  ensurePinDir(pinDir);
  const total = opts.pairs * 2;
  const ids = Array.from({ length: total }, (_, i) => remoteSpiffe(i));
  const { ca } = await DevCa.init({ dir: join(workDir, 'ca'), trustDomain: TD });
  const peer = await startPeer(join(workDir, 'ca'), ids, workDir);
  const dp = Datapath.open({
    objectPath: join(packageRoot(), 'bpf/meshauth.bpf.o'),
    pinDir,
    settings: { signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false },
  });
  const signals = dp.signals();
  let manager: AuthManager | undefined;
  try {
    dp.upsertIpcache({ cidr: `${LOCAL_IP}/32`, identity: LOCAL_ID, nodeId: 0 });
    for (let i = 0; i < total; i++)
      dp.upsertIpcache({ cidr: `${remoteIp(i)}/32`, identity: 1000 + i, nodeId: PEER_NODE_ID });
    dp.setPolicy({ localId: LOCAL_ID, remoteId: POLICY_ANY_REMOTE }, AuthType.SpiffeMtls);

    const localSvid = await ca.issue(localSpiffe);
    const map = new StampingMap(dp.auth);
    const cache = new AuthCache(map);
    const resolver: PairResolver = {
      spiffeIdOf: (n) => (n === LOCAL_ID ? localSpiffe : n >= 1000 ? remoteSpiffe(n - 1000) : undefined),
      numericIdFor: (s) => (s === localSpiffe ? LOCAL_ID : 1000 + Number(s.slice(s.lastIndexOf('/w') + 2))),
      nodeNameOf: (n) => (n === PEER_NODE_ID ? 'bench-b' : undefined),
      nodeIdOf: (name) => (name === 'bench-b' ? PEER_NODE_ID : undefined),
      nodeEndpoint: () => ({ address: '127.0.0.1', port: peer.port }),
      pairRequired: () => true,
    };
    const handshakeMs: number[] = [];
    const client = new HandshakeClient({
      identity: { svid: (id) => (id === localSpiffe ? localSvid : undefined), bundles: () => ca.bundles() },
      nodeName: 'bench-a',
      maxEntryTtlMs: 3_600_000,
      timeoutMs: 10_000,
    });
    manager = new AuthManager({
      cache,
      resolver,
      authenticator: {
        authenticate: async (req) => {
          const r = await client.authenticate(req);
          handshakeMs.push(r.durationMs);
          return r;
        },
      },
      reporter: new AuthReporter({ audit: new MemoryAuditSink(), logger: silentLogger() }),
      logger: silentLogger(),
      options: {
        maxConcurrent: opts.concurrency,
        queueSize: 65_536,
        retryBaseMs: 100,
        retryMaxMs: 1000,
        reauthAt: 0,
      },
    });
    const dropStamp = new Map<string, bigint>();
    manager.start({
      run: (onSignal) =>
        signals.run((s) => {
          dropStamp.set(`${s.localId}/${s.remoteId}`, s.bootNs);
          onSignal(s);
        }),
      close: () => signals.close(),
    });

    const drop = (i: number): void => {
      const r = dp.testRun(wire.PROGRAMS.tcEgress, {
        data: buildTcpSyn({ src: LOCAL_IP, dst: remoteIp(i), srcPort: 40000 + (i % 20000) }),
      });
      if (r.retval !== 4)
        throw new Error(`bench: expected a drop (TC_ACT_STOLEN) for pair ${i}, got ${r.retval}`);
    };
    const collect = (from: number, to: number, wallMs: number): LatencyStats => {
      const lat: number[] = [];
      for (let i = from; i < to; i++) {
        const k = `${LOCAL_ID}/${1000 + i}`;
        const w = map.writtenAt.get(k);
        const d = dropStamp.get(k);
        if (w === undefined || d === undefined) throw new Error(`bench: pair ${i} never got an entry`);
        lat.push(Number(w - d) / 1e6);
      }
      lat.sort((a, b) => a - b);
      const hs = handshakeMs.splice(0).sort((a, b) => a - b);
      return {
        pairs: lat.length,
        p50Ms: pct(lat, 50),
        p90Ms: pct(lat, 90),
        p99Ms: pct(lat, 99),
        maxMs: lat[lat.length - 1]!,
        handshakeP50Ms: pct(hs, 50),
        wallMs,
      };
    };
    const waitFor = async (i: number): Promise<void> => {
      const k = `${LOCAL_ID}/${1000 + i}`;
      const deadline = Date.now() + 15_000;
      while (!map.writtenAt.has(k)) {
        if (Date.now() > deadline) throw new Error(`bench: no entry for pair ${i} after 15 s`);
        await new Promise((r) => setImmediate(r));
      }
    };

    // Warm-up: TLS contexts, JIT.
    for (let i = 0; i < 5; i++) {
      drop(total - 1 - i);
      await waitFor(total - 1 - i);
    }
    handshakeMs.length = 0;
    const n = opts.pairs;
    let t0 = Date.now();
    for (let i = 0; i < n - 5; i++) {
      drop(i);
      await waitFor(i);
    }
    const paced = collect(0, n - 5, Date.now() - t0);
    t0 = Date.now();
    for (let i = n; i < 2 * n - 5; i++) drop(i);
    for (let i = n; i < 2 * n - 5; i++) await waitFor(i);
    const burst = collect(n, 2 * n - 5, Date.now() - t0);
    return { paced, burst, concurrency: opts.concurrency };
  } finally {
    await manager?.close();
    signals.close();
    dp.close();
    Datapath.removePins(pinDir);
    peer.child.kill('SIGTERM');
    rmSync(workDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = benchArgs(
    {
      name: 'auth-latency',
      summary:
        'Signal -> entry latency: from the kernel dropping a packet of an unauthenticated pair to the\n' +
        'auth map entry written after a real mTLS handshake with a peer daemon (paced and burst runs).',
      notes: 'Needs root. MESHAUTH_BENCH_SMOKE=1: 50 pairs.',
    },
    {
      pairs: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'fresh pairs per run (default: 1000)',
      },
      concurrency: {
        type: 'string',
        value: 'n',
        default: '8',
        number: { min: 1, integer: true },
        help: 'handshakes in flight at once',
      },
      json: { type: 'boolean', default: false, help: 'print the results as JSON' },
    },
  );
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const pairs = Number(values.pairs ?? (smoke ? 50 : 1000));
  const r = await runAuthLatencyBench({ pairs, concurrency: Number(values.concurrency) });
  if (values.json) {
    console.log(JSON.stringify(r));
    return;
  }
  const f = (x: number): string => x.toFixed(2).padStart(8);
  console.log(
    `signal → entry latency (kernel drop stamp → auth map written), ms; concurrency ${r.concurrency}`,
  );
  console.log('run      pairs       p50      p90      p99      max  handshake-p50  wall-ms');
  for (const [name, s] of [
    ['paced', r.paced],
    ['burst', r.burst],
  ] as const) {
    console.log(
      `${name.padEnd(6)} ${String(s.pairs).padStart(7)}  ${f(s.p50Ms)} ${f(s.p90Ms)} ${f(s.p99Ms)} ${f(s.maxMs)}      ${f(s.handshakeP50Ms)}  ${String(s.wallMs).padStart(7)}`,
    );
  }
  console.log(
    `pipeline overhead at p50 (paced): ${(r.paced.p50Ms - r.paced.handshakeP50Ms).toFixed(2)} ms over the handshake itself`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
