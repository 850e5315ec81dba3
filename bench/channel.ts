/**
 * Node channels (auth.mode channel): pair authentications over a warm channel, against full
 * mutual TLS handshakes measured in the same run on the same core.
 *
 *   node dist/bench/channel.js [--identities 100] [--burst 1000] [--samples 2000] [--seconds 3] [--cpu 0]
 *
 * Two NodeChannels (node-a, node-b) in this one process on loopback, each with `identities`
 * workloads (dev CA, ECDSA P-256 SVIDs) and WireGuard binding on, pinned to one core: every
 * figure counts the work of BOTH ends on that core, as bench/handshake.ts does.
 *
 *   warm-up          channel open + one RFC 9261 proof per identity (2 × identities)
 *   all pairs        identities² pairs, one after another: local entry + the peer's reverse entry
 *   rate             the same, as pair authentications per second of one core
 *   signal → entry   one cold pair at a time: authenticate() call to local result (p50/p99), and to
 *                    the peer's reverse entry (one message, so ≈ one loopback one-way trip)
 *   burst            `burst` pairs requested at once: until the last local / last reverse entry
 *   baselines        per-pair meshauth handshakes (bench/handshake.ts), bare node:tls mutual
 *                    handshakes, openssl s_server/s_time -new (when openssl is installed)
 *
 * The entry write is a Map insert behind the same write-check function meshauthd uses (the BPF map
 * write is the datapath bench's); what is measured is the authentication path.
 * MESHAUTH_BENCH_SMOKE=1: 10 × 10 identities, short rounds (CI smoke run).
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { NodeChannels } from '../src/auth/channel/index.js';
import type { ServerAuthenticated } from '../src/auth/manager.js';
import { entryWriteCheck } from '../src/auth/write-check.js';
import { DevCa } from '../src/identity/index.js';
import type { Svid, TrustBundles } from '../src/spiffe/index.js';
import { generatePrivateKey, wireguardKeyAgreement } from '../src/wireguard/index.js';
import { makePki, measureMeshauth, measureNodeTls, measureOpenssl } from './handshake.js';
import { benchArgs } from './args.js';

const TD = 'bench.local';
const nodeId = (n: string): string => `spiffe://${TD}/meshauth/node/${n}`;
const workload = (node: string, i: number): string => `spiffe://${TD}/ns/${node}/sa/w${i}`;

interface Opts {
  identities: number;
  burst: number;
  samples: number;
  seconds: number;
  cpu: number | undefined;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

/** JS heap plus Buffers after a full collection (OpenSSL's native per-connection state is not in it). */
function memory(): number {
  collect();
  collect();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

class Identity {
  readonly svids = new Map<string, Svid>();
  constructor(private readonly trust: TrustBundles) {}
  svid(id: string): Svid | undefined {
    return this.svids.get(id);
  }
  bundles(): TrustBundles {
    return this.trust;
  }
}

async function setUp(n: number) {
  const ca = await DevCa.create(TD);
  const bundles = ca.bundles();
  const ids = { 'node-a': new Identity(bundles), 'node-b': new Identity(bundles) };
  const local = {
    'node-a': Array.from({ length: n }, (_, i) => workload('a', i)),
    'node-b': Array.from({ length: n }, (_, i) => workload('b', i)),
  };
  for (const node of ['node-a', 'node-b'] as const) {
    for (const id of local[node]) ids[node].svids.set(id, await ca.issue(id));
  }
  const nodeSvids = {
    'node-a': await ca.issue(nodeId('node-a')),
    'node-b': await ca.issue(nodeId('node-b')),
  };
  const wg = {
    'node-a': wireguardKeyAgreement(generatePrivateKey()),
    'node-b': wireguardKeyAgreement(generatePrivateKey()),
  };
  const ports = new Map<string, number>();
  const written = { 'node-a': new Map<string, number>(), 'node-b': new Map<string, number>() };
  const onReverse: { fn: ((r: ServerAuthenticated) => void) | undefined } = { fn: undefined };
  const make = (me: 'node-a' | 'node-b', peer: 'node-a' | 'node-b'): NodeChannels => {
    const check = entryWriteCheck({
      holdsSvid: (id) => ids[me].svids.has(id),
      isLocalIdentity: (id) => ids[me].svids.has(id),
      isWorkloadOnNode: (id, node) => node === peer && ids[peer].svids.has(id),
      requiresPair: () => true,
    });
    return new NodeChannels({
      nodeName: me,
      nodeSvid: () => nodeSvids[me],
      nodeSpiffeId: nodeId,
      identity: ids[me],
      channelEndpoint: (node) => {
        const port = ports.get(node);
        return port === undefined ? undefined : { address: '127.0.0.1', port };
      },
      nodeForAddress: () => peer,
      isWorkloadOnNode: (id, node) => node === peer && ids[peer].svids.has(id),
      // Proofs are asked for by the bench (memory is measured channel first, then proofs).
      proofsFor: () => [],
      wireguard: wg[me],
      expectedPeerWireguardKey: (node) => (node === peer ? wg[peer].publicKey : undefined),
      onPairRequested: (r) => {
        const refused = check({ localId: r.localId, remoteId: r.remoteId, node: r.peerNode });
        if (refused) throw Object.assign(new Error(refused.message), { reason: refused.reason });
        written[me].set(`${r.localId}|${r.remoteId}`, r.expiresAtMs);
        onReverse.fn?.(r);
      },
      maxEntryTtlMs: 3_600_000,
      timeoutMs: 30_000,
      pingIntervalMs: 60_000,
    });
  };
  const a = make('node-a', 'node-b');
  const b = make('node-b', 'node-a');
  ports.set('node-a', (await a.listen({ host: '127.0.0.1', port: 0 })).port);
  ports.set('node-b', (await b.listen({ host: '127.0.0.1', port: 0 })).port);
  const checkA = entryWriteCheck({
    holdsSvid: (id) => ids['node-a'].svids.has(id),
    isLocalIdentity: (id) => ids['node-a'].svids.has(id),
    isWorkloadOnNode: (id, node) => node === 'node-b' && ids['node-b'].svids.has(id),
    requiresPair: () => true,
  });
  /** The initiator's path: authenticate over the channel, write-check, write. */
  const pair = async (localId: string, remoteId: string): Promise<void> => {
    const r = await a.authenticate({ peerNode: 'node-b', peerAddress: '', peerPort: 0, localId, remoteId });
    const refused = checkA({ localId, remoteId, node: 'node-b' });
    if (refused) throw new Error(refused.message);
    written['node-a'].set(`${localId}|${remoteId}`, r.expiresAtMs);
  };
  return { a, b, local, written, pair, onReverse };
}

export async function runChannelBench(o: Opts) {
  if (o.cpu !== undefined)
    execFileSync('taskset', ['-a', '-cp', String(o.cpu), String(process.pid)], { stdio: 'ignore' });
  const env = await setUp(o.identities);
  const { a, b, local, written, pair, onReverse } = env;
  const waitReverse = (count: number): Promise<void> =>
    new Promise((resolve) => {
      if (written['node-b'].size >= count) return resolve();
      onReverse.fn = () => {
        if (written['node-b'].size >= count) {
          onReverse.fn = undefined;
          resolve();
        }
      };
    });
  try {
    // Warm-up: channel, then every identity's proof, both ways; memory after each step.
    const m0 = memory();
    let t0 = performance.now();
    await a.ensureChannel('node-b');
    const pa = () => a.proofs('node-b')!;
    const pb = () => b.proofs('node-a')!;
    while (!b.proofs('node-a')) await new Promise((r) => setTimeout(r, 1));
    const channelMs = performance.now() - t0;
    const m1 = memory();
    // Proofs in two halves: the second half's growth is the marginal cost of a proof, without the
    // code compiled and the caches created on first use (which the first half carries).
    const half = Math.max(1, Math.floor(o.identities / 2));
    const prove = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) pa().request(local['node-a'][i]!, local['node-b'][i]!);
      while (pa().counters.verified < to || pb().counters.verified < to) {
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    await prove(0, half);
    const mHalf = memory();
    await prove(half, o.identities);
    const warmupMs = performance.now() - t0;
    const m2 = memory();
    const channelBytes = m1 - m0;
    const proofBytes = (m2 - m1) / (2 * o.identities);
    const marginalProofBytes = (m2 - mHalf) / (2 * (o.identities - half) || 1);

    // All identities² pairs, one after another.
    written['node-a'].clear();
    written['node-b'].clear();
    const total = o.identities * o.identities;
    t0 = performance.now();
    for (const l of local['node-a']) for (const r of local['node-b']) await pair(l, r);
    const allLocalMs = performance.now() - t0;
    await waitReverse(total);
    const allMs = performance.now() - t0;
    const signedAfterWarmup = pa().counters.signed + pb().counters.signed;

    // Signal → entry, one pair at a time (the channel holds no per-pair state: each is cold).
    const localLat: number[] = [];
    const reverseLat: number[] = [];
    for (let i = 0; i < o.samples; i++) {
      const l = local['node-a'][i % o.identities]!;
      const r = local['node-b'][Math.floor(i / o.identities) % o.identities]!;
      written['node-b'].delete(`${r}|${l}`);
      const target = written['node-b'].size + 1;
      const s = performance.now();
      const rev = waitReverse(target);
      await pair(l, r);
      localLat.push(performance.now() - s);
      await rev;
      reverseLat.push(performance.now() - s);
    }

    // Burst: `burst` pairs at once.
    const burstPairs: Array<[string, string]> = [];
    for (let i = 0; i < o.burst; i++)
      burstPairs.push([
        local['node-a'][i % o.identities]!,
        local['node-b'][Math.floor(i / o.identities) % o.identities]!,
      ]);
    for (const [l, r] of burstPairs) written['node-b'].delete(`${r}|${l}`);
    const target = written['node-b'].size + new Set(burstPairs.map(([l, r]) => `${l}|${r}`)).size;
    t0 = performance.now();
    const rev = waitReverse(target);
    await Promise.all(burstPairs.map(([l, r]) => pair(l, r)));
    const burstLocalMs = performance.now() - t0;
    await rev;
    const burstMs = performance.now() - t0;
    const signedEnd = pa().counters.signed + pb().counters.signed;
    await a.close();
    await b.close();

    // Baselines, same run, same core.
    const pki = makePki();
    const commands: string[] = [];
    let perPair: number, bare: number, ossl: number | undefined;
    try {
      perPair = await measureMeshauth(pki, o.seconds, 1);
      bare = await measureNodeTls(pki, o.seconds, 1);
      ossl = hasOpenssl() ? await measureOpenssl(pki, o.seconds, o.cpu, commands) : undefined;
    } finally {
      rmSync(pki.dir, { recursive: true, force: true });
    }
    return {
      identities: o.identities,
      pairs: total,
      warmupMs,
      channelMs,
      channelBytes,
      proofBytes,
      marginalProofBytes,
      proofs: 2 * o.identities,
      allLocalMs,
      allMs,
      pairsPerSec: total / (allMs / 1000),
      signaturesDuringPairs: signedEnd - signedAfterWarmup,
      localP50: pct(localLat, 50),
      localP99: pct(localLat, 99),
      reverseP50: pct(reverseLat, 50),
      reverseP99: pct(reverseLat, 99),
      samples: o.samples,
      burst: o.burst,
      burstLocalMs,
      burstMs,
      perPairHandshakesPerSec: perPair,
      nodeTlsPerSec: bare,
      opensslPerSec: ossl,
      commands,
      cpu: o.cpu,
    };
  } finally {
    await a.close();
    await b.close();
  }
}

async function main(): Promise<void> {
  const { values } = benchArgs(
    {
      name: 'channel',
      summary:
        'Node channels (auth.mode channel): pair authentications over a warm channel, next to full\n' +
        'mutual TLS handshakes measured in the same run on the same core.',
      notes: 'MESHAUTH_BENCH_SMOKE=1: 10 x 10 identities, short rounds.',
    },
    {
      identities: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'workloads on each node (default: 100)',
      },
      burst: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'pairs requested at once (default: 1000)',
      },
      samples: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'cold pairs timed one at a time (default: 2000)',
      },
      seconds: {
        type: 'string',
        value: 's',
        number: { min: 0.1 },
        help: 'length of each baseline round (default: 3)',
      },
      cpu: { type: 'string', value: 'n|none', default: '0', help: 'core to pin to (none: no pinning)' },
    },
  );
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const r = await runChannelBench({
    identities: Number(values.identities ?? (smoke ? 10 : 100)),
    burst: Number(values.burst ?? (smoke ? 100 : 1000)),
    samples: Number(values.samples ?? (smoke ? 100 : 2000)),
    seconds: Number(values.seconds ?? (smoke ? 1 : 3)),
    cpu: values.cpu === 'none' ? undefined : Number(values.cpu),
  });
  const f = (x: number, d = 0): string => x.toFixed(d);
  const base = r.opensslPerSec ?? r.nodeTlsPerSec;
  const baseName = r.opensslPerSec !== undefined ? 'openssl s_time -new' : 'bare node:tls';
  console.log(
    `node channel, two nodes in one process on cpu ${r.cpu ?? 'unpinned'} (both ends on that core)`,
  );
  console.log(
    `  warm-up: channel + ${r.proofs} identity proofs            ${f(r.warmupMs, 1)} ms (channel ${f(r.channelMs, 1)} ms)`,
  );
  console.log(
    `  memory (JS heap + buffers, both ends): channel ${f(r.channelBytes / 1024, 1)} KiB, per proof (sender + receiver) ${f(r.proofBytes / 1024, 2)} KiB, marginal (second half of the proofs) ${f(r.marginalProofBytes / 1024, 2)} KiB`,
  );
  console.log(
    `  all ${r.pairs} pairs of ${r.identities} × ${r.identities} identities  ${f(r.allMs, 1)} ms  (local entries ${f(r.allLocalMs, 1)} ms; signatures during pairs: ${r.signaturesDuringPairs})`,
  );
  console.log(`  pair authentications / s over the warm channel  ${f(r.pairsPerSec)}`);
  console.log(
    `  signal → local entry (n=${r.samples})       p50 ${f(r.localP50, 3)} ms  p99 ${f(r.localP99, 3)} ms`,
  );
  console.log(
    `  signal → peer's reverse entry              p50 ${f(r.reverseP50, 3)} ms  p99 ${f(r.reverseP99, 3)} ms`,
  );
  console.log(
    `  ${r.burst} pairs at once: last local entry ${f(r.burstLocalMs, 1)} ms, last reverse entry ${f(r.burstMs, 1)} ms`,
  );
  console.log('baselines (same run, same core, full mutual TLS 1.3 handshakes / s):');
  console.log(`  meshauth per-pair handshake               ${f(r.perPairHandshakesPerSec)}`);
  console.log(`  bare node:tls                             ${f(r.nodeTlsPerSec)}`);
  if (r.opensslPerSec !== undefined)
    console.log(`  openssl s_server + s_time -new            ${f(r.opensslPerSec)}`);
  console.log(
    `ratios: channel pairs / ${baseName} = ${f(r.pairsPerSec / base, 1)}; channel pairs / per-pair handshakes = ${f(r.pairsPerSec / r.perPairHandshakesPerSec, 1)}`,
  );
  for (const c of r.commands) console.log(`  $ ${c}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
