/**
 * Audit trail numbers on a real SQLite file (WAL, synchronous=NORMAL, all indexes, hash chain):
 *
 *   node dist/bench/audit.js [--events 1000000] [--queries 2000] [--dir /tmp] [--keep]
 *
 * 1. Sustained insert rate through AuditWriter: record() of realistic events (handshake results
 *    with serials, TLS details, signal aggregates) as fast as the loop allows, until every event is
 *    committed; events/s = events / (last commit - first record).
 * 2. Fill the store to --events rows, then run --queries filtered queries (the kinds the CLI sends:
 *    one identity, identity glob, node+outcome, reason, type, last-hour window; newest page of 100,
 *    and a forward page from a time bound) and print p50/p95/p99/max latency per kind and overall.
 * MESHAUTH_BENCH_SMOKE=1 (or run({ smoke: true })) uses 20,000 events and 160 queries.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { AuditStore, AuditWriter, type AuditEventInput, type AuditQuery } from '../src/audit/index.js';

const WORKLOADS = 200;
const NODES = 20;
const REASONS = [
  'svid-expired',
  'svid-untrusted',
  'spiffe-id-mismatch',
  'timeout',
  'peer-unreachable',
  'node-mismatch',
];

function makeEvent(i: number, atMs: number): AuditEventInput {
  const local = `spiffe://bench.local/ns/ns${i % 17}/sa/w${i % WORKLOADS}`;
  const remote = `spiffe://bench.local/ns/ns${(i * 7) % 17}/sa/w${(i * 31) % WORKLOADS}`;
  const node = `node-${(i * 13) % NODES}`;
  const k = i % 10;
  if (k < 6) {
    return {
      type: 'handshake-succeeded',
      outcome: 'success',
      localId: local,
      remoteId: remote,
      node,
      direction: i % 2 ? 'client' : 'server',
      atMs,
      details: {
        durationMs: 2 + (i % 9),
        peerSerials: [`${(i * 2654435761) % 4294967296}`.padStart(10, '0'), '0a1b2c3d'],
        notAfterMs: atMs + 3_600_000,
        tlsVersion: 'TLSv1.3',
        cipher: 'TLS_AES_128_GCM_SHA256',
      },
    };
  }
  if (k < 8) {
    return {
      type: 'signal',
      outcome: 'info',
      localId: local,
      remoteId: remote,
      node,
      direction: 'egress',
      atMs,
      details: { signals: 3, packets: 17 },
    };
  }
  if (k === 8) {
    return {
      type: 'handshake-failed',
      outcome: 'failure',
      reason: REASONS[i % REASONS.length]!,
      localId: local,
      remoteId: remote,
      node,
      direction: 'client',
      atMs,
      details: { durationMs: 40 },
    };
  }
  return {
    type: 'entry-written',
    outcome: 'success',
    localId: local,
    remoteId: remote,
    node,
    atMs,
    details: { expiresAtMs: atMs + 3_600_000 },
  };
}

export interface AuditBenchResult {
  insert: { events: number; seconds: number; perSecond: number; dropped: number };
  fill: { events: number; seconds: number };
  queries: Record<string, { n: number; p50: number; p95: number; p99: number; max: number; avgRows: number }>;
  dbBytes: number;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function insertRate(
  writer: AuditWriter,
  store: AuditStore,
  n: number,
  t0Ms: number,
): Promise<AuditBenchResult['insert']> {
  const target = store.lastSeq() + n;
  const done = new Promise<number>((resolve) => {
    const off = store.onAppend((evs) => {
      if (evs[evs.length - 1]!.seq >= target) {
        off();
        resolve(performance.now());
      }
    });
  });
  const start = performance.now();
  let i = 0;
  // produce in slices so the writer's flushes interleave, as they do in the daemon
  await new Promise<void>((resolve) => {
    const produce = () => {
      const end = Math.min(n, i + 5000);
      for (; i < end; i++) writer.record(makeEvent(i, t0Ms + i));
      if (i < n) setImmediate(produce);
      else resolve();
    };
    produce();
  });
  const end = await done;
  const seconds = (end - start) / 1000;
  return { events: n, seconds, perSecond: n / seconds, dropped: writer.dropped };
}

export async function runAuditBench(opts: {
  events: number;
  queries: number;
  dir?: string;
  keep?: boolean;
}): Promise<AuditBenchResult> {
  const dir = mkdtempSync(join(opts.dir ?? tmpdir(), 'meshauth-audit-bench-'));
  const store = AuditStore.open({ path: join(dir, 'audit.db') });
  const writer = new AuditWriter(store, { maxQueue: 200_000, batchSize: 5000 });
  const t0 = Date.now() - opts.events; // one event per ms, ending now
  try {
    const insertN = Math.min(opts.events, 200_000);
    const insert = await insertRate(writer, store, insertN, t0);

    const fillStart = performance.now();
    const batch: AuditEventInput[] = [];
    for (let i = insertN; i < opts.events; i++) {
      batch.push(makeEvent(i, t0 + i));
      if (batch.length === 10_000) store.append(batch.splice(0));
    }
    if (batch.length) store.append(batch);
    const fill = { events: opts.events - insertN, seconds: (performance.now() - fillStart) / 1000 };
    store.checkpoint();

    const nowMs = t0 + opts.events;
    const kinds: Record<string, (r: number) => AuditQuery> = {
      'identity, newest 100': (r) => ({
        identity: `spiffe://bench.local/ns/ns${r % 17}/sa/w${r % WORKLOADS}`,
        newestFirst: true,
      }),
      'identity glob, newest 100': (r) => ({
        identity: `spiffe://bench.local/ns/ns${r % 17}/*`,
        newestFirst: true,
      }),
      'node+outcome=failure, newest 100': (r) => ({
        node: `node-${r % NODES}`,
        outcome: 'failure',
        newestFirst: true,
      }),
      'reason, newest 100': (r) => ({ reason: REASONS[r % REASONS.length]!, newestFirst: true }),
      'type=handshake-failed since 10m, newest 100': () => ({
        types: ['handshake-failed'],
        sinceMs: nowMs - 600_000,
        newestFirst: true,
      }),
      // what `meshauth events --limit 0` pages through: oldest first from a time bound
      'type=handshake-failed since 10m, oldest 100': () => ({
        types: ['handshake-failed'],
        sinceMs: nowMs - 600_000,
      }),
      'identity+failure, last hour': (r) => ({
        identity: `spiffe://bench.local/ns/ns${r % 17}/sa/w${r % WORKLOADS}`,
        outcome: 'failure',
        sinceMs: nowMs - 3_600_000,
        newestFirst: true,
      }),
      'time window (random 1 min)': (r) => {
        const s = t0 + ((r * 7919) % Math.max(1, opts.events - 60_000));
        return { sinceMs: s, untilMs: s + 60_000 };
      },
    };
    const queries: AuditBenchResult['queries'] = {};
    const all: number[] = [];
    const names = Object.keys(kinds);
    const per = Math.max(1, Math.floor(opts.queries / names.length));
    for (const name of names) {
      const lat: number[] = [];
      let rows = 0;
      for (let r = 0; r < per; r++) {
        const q = { ...kinds[name]!(r * 104729 + 13), limit: 100 };
        const s = performance.now();
        rows += store.query(q).length;
        lat.push(performance.now() - s);
      }
      all.push(...lat);
      lat.sort((a, b) => a - b);
      queries[name] = {
        n: lat.length,
        p50: pct(lat, 50),
        p95: pct(lat, 95),
        p99: pct(lat, 99),
        max: lat.at(-1)!,
        avgRows: rows / lat.length,
      };
    }
    all.sort((a, b) => a - b);
    queries['ALL'] = {
      n: all.length,
      p50: pct(all, 50),
      p95: pct(all, 95),
      p99: pct(all, 99),
      max: all.at(-1)!,
      avgRows: 0,
    };
    return { insert, fill, queries, dbBytes: store.stats().bytes };
  } finally {
    writer.close();
    store.close();
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }
}

const SMOKE = { events: 20_000, queries: 160 };
const FULL = { events: 1_000_000, queries: 2_400 };

/** Run the benchmark (smoke: a small round for CI), print the report and return the numbers. */
export async function run(opts: {
  smoke: boolean;
  events?: number;
  queries?: number;
  dir?: string;
  keep?: boolean;
}): Promise<Record<string, unknown>> {
  const size = opts.smoke ? SMOKE : FULL;
  const events = opts.events ?? size.events;
  const r = await runAuditBench({
    events,
    queries: opts.queries ?? size.queries,
    ...(opts.dir ? { dir: opts.dir } : {}),
    keep: opts.keep ?? false,
  });
  printReport(r, events);
  return { ...r, storedEvents: events, smoke: opts.smoke };
}

function printReport(r: AuditBenchResult, events: number): void {
  const f = (n: number) => n.toFixed(2);
  console.log(`audit insert (AuditWriter, batched transactions, hash chain, indexes):`);
  console.log(
    `  ${r.insert.events} events in ${r.insert.seconds.toFixed(2)} s = ${Math.round(r.insert.perSecond)} events/s (dropped ${r.insert.dropped})`,
  );
  console.log(
    `fill to ${events} events: ${r.fill.events} more in ${r.fill.seconds.toFixed(1)} s; db ${(r.dbBytes / 1048576).toFixed(0)} MiB`,
  );
  console.log(`filtered queries over ${events} events (page of 100), ms:`);
  const w = Math.max(...Object.keys(r.queries).map((k) => k.length));
  console.log(
    `  ${'query'.padEnd(w)}  ${'n'.padStart(5)}  ${'p50'.padStart(7)}  ${'p95'.padStart(7)}  ${'p99'.padStart(7)}  ${'max'.padStart(7)}  rows`,
  );
  for (const [k, q] of Object.entries(r.queries)) {
    console.log(
      `  ${k.padEnd(w)}  ${String(q.n).padStart(5)}  ${f(q.p50).padStart(7)}  ${f(q.p95).padStart(7)}  ${f(q.p99).padStart(7)}  ${f(q.max).padStart(7)}  ${q.avgRows ? q.avgRows.toFixed(0) : ''}`,
    );
  }
}

async function main(): Promise<void> {
  const smoke = process.env['MESHAUTH_BENCH_SMOKE'] === '1';
  const { values } = parseArgs({
    options: {
      events: { type: 'string' },
      queries: { type: 'string' },
      dir: { type: 'string' },
      keep: { type: 'boolean', default: false },
    },
  });
  await run({
    smoke,
    ...(values.events ? { events: Number(values.events) } : {}),
    ...(values.queries ? { queries: Number(values.queries) } : {}),
    ...(values.dir ? { dir: values.dir } : {}),
    keep: values.keep ?? false,
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
