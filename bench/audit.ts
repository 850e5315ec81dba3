/**
 * Audit trail numbers on a real SQLite file (WAL, synchronous=NORMAL, all indexes, hash chain):
 *
 *   node dist/bench/audit.js [--events 1000000] [--queries 2000] [--dir /tmp] [--keep]
 *
 * 1. Sustained insert rate through AuditWriter: record() of realistic events (handshake results
 *    with serials, TLS details, signal aggregates) as fast as the loop allows, until every event is
 *    committed; events/s = events / (last commit - first record), with the longest event-loop
 *    stall meanwhile. Into an empty trail (200,000 events) with the writer thread (as meshauthd
 *    runs it) and, for comparison, writing in the main thread; then, with the writer thread, the
 *    last tenth (at most 100,000) of --events once the trail and its indexes are nearly full.
 * 2. Fill the store to --events rows, then run --queries filtered queries (the kinds the CLI sends:
 *    one identity, identity glob, node+outcome, reason, type, last-hour window; newest page of 100,
 *    and a forward page from a time bound) and print p50/p95/p99/max latency per kind and overall.
 * MESHAUTH_BENCH_SMOKE=1 (or run({ smoke: true })) uses 20,000 events and 160 queries.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { AuditStore, AuditWriter, type AuditEventInput, type AuditQuery } from '../src/audit/index.js';
import { benchArgs } from './args.js';

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

type InsertResult = {
  events: number;
  seconds: number;
  perSecond: number;
  dropped: number;
  /** Longest event-loop stall seen while the events were recorded and written, ms. */
  maxLoopLagMs: number;
};

export interface AuditBenchResult {
  /** Into an empty trail, AuditWriter writing from its thread (as meshauthd runs it). */
  insert: InsertResult;
  /** The same into another empty trail, AuditWriter writing in the main thread. */
  insertMain: InsertResult;
  /** Into the filled trail (every index at full size), from the writer thread. */
  insertFull: InsertResult;
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
): Promise<InsertResult> {
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  const target = store.lastSeq() + n;
  const done = new Promise<number>((resolve) => {
    const off = store.onAppend((seq) => {
      if (seq >= target) {
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
  lag.disable();
  const seconds = (end - start) / 1000;
  return { events: n, seconds, perSecond: n / seconds, dropped: writer.dropped, maxLoopLagMs: lag.max / 1e6 };
}

export async function runAuditBench(opts: {
  events: number;
  queries: number;
  dir?: string;
  keep?: boolean;
}): Promise<AuditBenchResult> {
  const dir = mkdtempSync(join(opts.dir ?? tmpdir(), 'meshauth-audit-bench-'));
  const store = AuditStore.open({ path: join(dir, 'audit.db') });
  const writer = new AuditWriter(store, { maxQueue: 200_000, thread: true });
  const t0 = Date.now() - opts.events; // one event per ms, ending now
  try {
    // the last events go in through the writer again once the trail is nearly full
    const fullN = Math.min(100_000, Math.max(1, Math.floor(opts.events / 10)));
    const insertN = Math.min(opts.events - fullN, 200_000);
    // the main-thread writer, for comparison, on a trail of its own
    const mainStore = AuditStore.open({ path: join(dir, 'main.db') });
    const mainWriter = new AuditWriter(mainStore, { maxQueue: 200_000, batchSize: 5000 });
    const insertMain = await insertRate(mainWriter, mainStore, insertN, t0);
    await mainWriter.close();
    mainStore.close();
    rmSync(join(dir, 'main.db'), { force: true });

    const insert = await insertRate(writer, store, insertN, t0);

    const fillStart = performance.now();
    const batch: AuditEventInput[] = [];
    for (let i = insertN; i < opts.events - fullN; i++) {
      batch.push(makeEvent(i, t0 + i));
      if (batch.length === 10_000) store.append(batch.splice(0));
    }
    if (batch.length) store.append(batch);
    const fill = { events: opts.events - fullN - insertN, seconds: (performance.now() - fillStart) / 1000 };
    store.checkpoint();
    const insertFull = await insertRate(writer, store, fullN, t0 + opts.events - fullN);
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
    return { insert, insertMain, insertFull, fill, queries, dbBytes: store.stats().bytes };
  } finally {
    await writer.close();
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
  const line = (what: string, x: InsertResult) =>
    console.log(
      `  ${what.padEnd(34)} ${String(x.events).padStart(7)} events in ${x.seconds.toFixed(2)} s = ${String(Math.round(x.perSecond)).padStart(6)} events/s, dropped ${x.dropped}, max event-loop stall ${x.maxLoopLagMs.toFixed(1)} ms`,
    );
  console.log(`audit insert (AuditWriter, batched transactions, hash chain, indexes):`);
  line('empty trail, writer thread', r.insert);
  line('empty trail, main thread', r.insertMain);
  console.log(
    `fill to ${events} events: ${r.fill.events} more in ${r.fill.seconds.toFixed(1)} s; db ${(r.dbBytes / 1048576).toFixed(0)} MiB`,
  );
  line(`trail at ${events - r.insertFull.events}, writer thread`, r.insertFull);
  console.log(
    `  writer thread / main thread (empty trail): ×${(r.insert.perSecond / r.insertMain.perSecond).toFixed(2)} events/s`,
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
  const { values } = benchArgs(
    {
      name: 'audit',
      summary:
        'Audit trail numbers on a real SQLite file: sustained insert rate through AuditWriter, then\n' +
        'filtered query latency (p50/p95/p99/max per kind) over a filled trail.',
      notes: 'MESHAUTH_BENCH_SMOKE=1: 20,000 events and 160 queries.',
    },
    {
      events: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'rows to fill the trail with (default: 1000000)',
      },
      queries: {
        type: 'string',
        value: 'n',
        number: { min: 1, integer: true },
        help: 'filtered queries to time (default: 2400)',
      },
      dir: {
        type: 'string',
        value: 'dir',
        help: 'directory of the database file (default: a temporary one)',
      },
      keep: { type: 'boolean', default: false, help: 'keep the database file afterwards' },
    },
  );
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
