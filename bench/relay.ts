/**
 * meshauth-relay numbers on loopback, everything in one process (10 node API servers with mTLS and
 * real SQLite trails, the relay, and the client):
 *
 *   node dist/bench/relay.js [--nodes 10] [--events 100000] [--queries 50] [--follows 200]
 *
 * 1. Cluster-wide QueryEvents through the relay over --nodes × --events events: the newest page of
 *    100 (no filter), the newest 100 failures, a 1 h window forward page, p50/p99/max.
 * 2. Follow latency: an event appended on a random node until the relay's follow client has it.
 * 3. Witness traffic: bytes of one SubmitHead (signed note + SVID chain, protobuf payload) and per
 *    node per hour at the default interval (60 s) to 3 witnesses; time to sign and to verify a head.
 * MESHAUTH_BENCH_SMOKE=1 uses 3 nodes × 2,000 events.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient, startApiServer, type ApiServer, type EventMsg } from '../src/api/index.js';
import { AuditStore, HeadPublisher, openSignedHead, type AuditEventInput } from '../src/audit/index.js';
import { DevCa } from '../src/identity/index.js';
import { startRelay } from '../src/relay/index.js';
import type { DaemonView } from '../src/api/index.js';
import { benchArgs } from './args.js';

const TD = 'bench.local';
const HOUR = 3_600_000;

const daemon: DaemonView = {
  listEntries: () => [],
  status: () => ({
    version: 'bench',
    node: 'n',
    startedAtMs: 0,
    datapath: { attached: false, mode: 'none' },
    identitySource: { kind: 'dev-ca', connected: true },
    identities: [],
    counters: {},
    entries: 0,
  }),
  flush: () => 0,
};

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const ms = (x: number) => `${x.toFixed(1)} ms`;

function eventsFor(node: number, n: number, now: number): AuditEventInput[] {
  // spread over the last 24 h, one in ten a failure
  return Array.from({ length: n }, (_, i) => ({
    type: i % 10 === 0 ? ('handshake-failed' as const) : ('handshake-succeeded' as const),
    outcome: i % 10 === 0 ? ('failure' as const) : ('success' as const),
    ...(i % 10 === 0 ? { reason: 'spiffe-id-mismatch' } : {}),
    atMs: now - 24 * HOUR + Math.floor((i * 24 * HOUR) / n) + node,
    localId: `spiffe://${TD}/ns/n${node}/sa/w${i % 50}`,
    remoteId: `spiffe://${TD}/ns/n${(node + 1) % 10}/sa/w${(i * 7) % 50}`,
    node: `node-${(node + 1) % 10}`,
    direction: 'egress' as const,
    details: { tls: 'TLSv1.3', durationMs: i % 17 },
  }));
}

async function main(): Promise<void> {
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const count = { min: 1, integer: true };
  const { values } = benchArgs(
    {
      name: 'relay',
      summary:
        'meshauth-relay numbers on loopback in one process: cluster-wide query latency, follow latency,\n' +
        'and witness traffic (bytes per head, sign and verify time).',
      notes: 'MESHAUTH_BENCH_SMOKE=1: 3 nodes x 2,000 events.',
    },
    {
      nodes: {
        type: 'string',
        value: 'n',
        default: smoke ? '3' : '10',
        number: count,
        help: 'node API servers',
      },
      events: {
        type: 'string',
        value: 'n',
        default: smoke ? '2000' : '100000',
        number: count,
        help: 'events per node',
      },
      queries: {
        type: 'string',
        value: 'n',
        default: smoke ? '10' : '50',
        number: count,
        help: 'queries of each kind',
      },
      follows: {
        type: 'string',
        value: 'n',
        default: smoke ? '20' : '200',
        number: count,
        help: 'follow latency samples',
      },
    },
  );
  const N = Number(values.nodes);
  const E = Number(values.events);
  const Q = Number(values.queries);
  const F = Number(values.follows);
  const dir = mkdtempSync(join(tmpdir(), 'meshauth-bench-relay-'));
  const ca = await DevCa.create(TD);
  const write = (name: string, text: string) => writeFileSync(join(dir, name), text);
  write('ca.pem', ca.caPem);
  const relaySvid = await ca.issue(`spiffe://${TD}/meshauth/relay`);
  write('relay.crt', relaySvid.chainPem);
  write('relay.key', relaySvid.keyPem);
  const admin = await ca.issue(`spiffe://${TD}/ops/admin`);
  const bundles = () => new Map([[TD, [ca.caDer]]]);
  const now = Date.now();
  const stores: AuditStore[] = [];
  const servers: ApiServer[] = [];
  const t0 = Date.now();
  for (let k = 0; k < N; k++) {
    const store = AuditStore.open({ path: join(dir, `node-${k}.db`) });
    const all = eventsFor(k, E, now);
    for (let i = 0; i < all.length; i += 10_000) store.appendQuiet(all.slice(i, i + 10_000));
    stores.push(store);
    const svid = await ca.issue(`spiffe://${TD}/meshauth/node/node-${k}`);
    servers.push(
      await startApiServer({
        store,
        daemon,
        unix: false,
        tcp: {
          host: '127.0.0.1',
          port: 0,
          svid: () => ({ certChainPem: svid.chainPem, keyPem: svid.keyPem }),
          bundles,
          allow: [relaySvid.spiffeId.toString()],
        },
      }),
    );
  }
  console.log(`filled ${N} nodes × ${E} events in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const relay = await startRelay({
    listen: { host: '127.0.0.1', port: 0 },
    tls: {
      certFile: join(dir, 'relay.crt'),
      keyFile: join(dir, 'relay.key'),
      bundleFile: join(dir, 'ca.pem'),
    },
    allow: [admin.spiffeId.toString()],
    nodes: () => servers.map((s, k) => ({ name: `node-${k}`, address: `127.0.0.1:${s.tcpPort}` })),
    auditPath: join(dir, 'relay.db'),
    nodeDeadlineMs: 10_000,
  });
  const client = new ApiClient({
    address: `127.0.0.1:${relay.port}`,
    timeoutMs: 30_000,
    tls: {
      certChainPem: Buffer.from(admin.chainPem),
      keyPem: Buffer.from(admin.keyPem),
      caPem: Buffer.from(ca.caPem),
    },
  });
  try {
    const kinds: [string, Parameters<ApiClient['queryEvents']>[0]][] = [
      ['newest 100, no filter', { pageSize: 100, newestFirst: true }],
      ['newest 100 failures', { pageSize: 100, newestFirst: true, filter: { outcome: 'failure' } }],
      ['1 h window, first 100', { pageSize: 100, filter: { sinceMs: now - 2 * HOUR, untilMs: now - HOUR } }],
    ];
    await client.queryEvents({ pageSize: 1 }); // connections up
    console.log(
      `\nCluster-wide QueryEvents through the relay (${N} nodes × ${E} events, ${Q} queries each):`,
    );
    const overall: number[] = [];
    for (const [name, req] of kinds) {
      const lat: number[] = [];
      let got = 0;
      for (let i = 0; i < Q; i++) {
        const s = performance.now();
        const p = await client.queryEvents(req);
        lat.push(performance.now() - s);
        got = p.events.length;
        if (p.partial) throw new Error('bench: partial answer');
      }
      overall.push(...lat);
      console.log(
        `  ${name.padEnd(24)} p50 ${ms(pct(lat, 50))}  p99 ${ms(pct(lat, 99))}  max ${ms(Math.max(...lat))}  (${got} events/page)`,
      );
    }
    console.log(`  ${'all'.padEnd(24)} p50 ${ms(pct(overall, 50))}  p99 ${ms(pct(overall, 99))}`);
    // baseline in the same run: the same queries straight to one node's API (mTLS, no relay)
    const direct = new ApiClient({
      address: `127.0.0.1:${servers[0]!.tcpPort}`,
      timeoutMs: 30_000,
      tls: {
        certChainPem: Buffer.from(relaySvid.chainPem),
        keyPem: Buffer.from(relaySvid.keyPem),
        caPem: Buffer.from(ca.caPem),
      },
    });
    const base: number[] = [];
    try {
      await direct.queryEvents({ pageSize: 1 });
      for (const [, req] of kinds) {
        for (let i = 0; i < Q; i++) {
          const s = performance.now();
          await direct.queryEvents(req);
          base.push(performance.now() - s);
        }
      }
    } finally {
      direct.close();
    }
    console.log(
      `  baseline: the same queries to one node directly p50 ${ms(pct(base, 50))}  p99 ${ms(pct(base, 99))}; relay over ${N} nodes / one node: ×${(pct(overall, 50) / pct(base, 50)).toFixed(1)} at p50`,
    );

    // follow latency
    const ctl = new AbortController();
    const it = client.followEvents({}, ctl.signal)[Symbol.asyncIterator]();
    let pending = it.next();
    // the relay opens a stream per node: wait until every node's store has a follower
    for (let i = 0; i < 500; i++) {
      if (stores.every((s) => (s as unknown as { listeners: Set<unknown> }).listeners.size > 0)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const fl: number[] = [];
    for (let i = 0; i < F; i++) {
      const k = i % N;
      const s = performance.now();
      stores[k]!.append([{ type: 'reauth', outcome: 'info', reason: `bench-${i}`, atMs: Date.now() }]);
      for (;;) {
        const r = await pending;
        pending = it.next();
        const e = r.value as EventMsg;
        if (e.reason === `bench-${i}`) break;
      }
      fl.push(performance.now() - s);
    }
    ctl.abort();
    console.log(
      `\nFollow latency, commit on a node → relay client (${F} events): p50 ${ms(pct(fl, 50))}  p99 ${ms(pct(fl, 99))}  max ${ms(Math.max(...fl))}`,
    );

    // witness traffic
    const nodeSvid = await ca.issue(`spiffe://${TD}/meshauth/node/node-0`);
    const pub = new HeadPublisher({
      store: stores[0]!,
      spiffeId: `spiffe://${TD}/meshauth/node/node-0`,
      node: 'node-0',
      svid: () => ({ chainPem: nodeSvid.chainPem, keyPem: nodeSvid.keyPem }),
      witnesses: [],
    });
    const signT: number[] = [];
    const verT: number[] = [];
    let env = pub.signNow()!;
    for (let i = 0; i < 200; i++) {
      let s = performance.now();
      env = pub.signNow()!;
      signT.push(performance.now() - s);
      s = performance.now();
      openSignedHead(env.note, env.certChain, bundles());
      verT.push(performance.now() - s);
    }
    // protobuf: field tags and lengths add a few bytes per field
    const payload = Buffer.byteLength(env.note) + env.certChain.reduce((n, c) => n + c.length + 3, 0) + 6;
    const perHour = payload * 60 * 3;
    console.log(
      `\nWitnessed heads: one SubmitHead payload ${payload} bytes (note ${Buffer.byteLength(env.note)} B, chain ${env.certChain.reduce((n, c) => n + c.length, 0)} B); ` +
        `per node per hour at 60 s to 3 witnesses: ${(perHour / 1024).toFixed(1)} KiB (+ TLS/HTTP2 framing); ` +
        `sign p50 ${ms(pct(signT, 50))}, verify (chain + signature) p50 ${ms(pct(verT, 50))}`,
    );
  } finally {
    client.close();
    await relay.close();
    for (const s of servers) await s.close();
    for (const s of stores) s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
