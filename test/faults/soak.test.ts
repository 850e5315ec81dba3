/**
 * Soak: MESHAUTH_SOAK_MINUTES (default 3; 30 on demand) of SVID rotations (svidTtl 1 minute, so a
 * rotation every few tens of seconds), entry re-authentication (maxEntryTtl 1 minute), pair churn
 * (new connections from 20 client workloads every 5 s), a live pair sending UDP throughout and a
 * SIGKILL and restart of node-a every minute. Guarantees: node-b's descriptors and memory stay
 * flat, the live pair loses no datagram, every churned connection succeeds, no event is lost (no
 * gap in either trail), both audit chains verify and no entry is unearned.
 *
 * node-b (never restarted) is sampled every 5 s: open fds (/proc), RSS (/proc) and V8 heap used
 * (its own `meshauth_nodejs_heap_size_used_bytes`). The least-squares slope of each over the run
 * after the first minute is printed per minute, with the other numbers RELIABILITY.md records;
 * MESHAUTH_SOAK_REPORT names a file the same JSON line is also written to (and `<file>.samples`
 * gets each sample as it is taken).
 */
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import {
  CLIENT_FIRST,
  CLIENT_PREFIX,
  CLIENTS_PATTERN,
  idOf,
  metricsPatch,
  readAudit,
  scrapeMetrics,
  slope,
  startFaultCluster,
  unearnedEntries,
  waitFor,
  type FaultCluster,
} from './harness.js';

const MINUTES = Number(process.env['MESHAUTH_SOAK_MINUTES'] ?? 3);
const reportFile = process.env['MESHAUTH_SOAK_REPORT'];
const CLIENTS = 20;

const rssKb = (pid: number): number =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(`soak: ${MINUTES} minutes of rotations, churn and restarts`, () => {
  let env: FaultCluster | undefined;

  beforeAll(async () => {
    env = await startFaultCluster('fsoak', {
      clients: CLIENTS,
      svidTtl: '1m',
      maxEntryTtl: '1m',
      configPatch: () => metricsPatch,
      rules: [
        { name: 'web-to-db', from: idOf('web'), to: idOf('db') },
        { name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') },
      ],
    });
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it(
    'keeps fds and memory flat and loses nothing',
    async () => {
      const { cluster, traffic } = env!;
      const db = cluster.topo.pod('db').ip;
      expect((await cluster.connect('web', 'db', 8080, 8000)).ok).toBe(true);
      const sink = traffic('db', ['udp-sink', '--port', '9000']);
      await waitFor(() => sink.lines.length > 0, 5000, 'udp sink');
      const sender = traffic('web', ['udp-send', '--host', db, '--port', '9000', '--every', '20']);
      const pidB = cluster.daemons.get('node-b')!.child.pid!;
      const started = Date.now();
      const samples: Array<{ min: number; fds: number; rssKb: number; heapMiB: number }> = [];
      const churn: Array<Record<string, unknown>> = [];
      const end = Date.now() + MINUTES * 60_000;
      let tick = 0;
      let restarts = 0;
      let nextRestart = Date.now() + 60_000;
      while (Date.now() < end) {
        tick++;
        const batch = traffic('web', [
          'pairs',
          ...['--host', db, '--port', '8080', '--from', CLIENT_PREFIX],
          ...['--first', String(CLIENT_FIRST + ((tick * 5) % CLIENTS)), '--count', '5', '--every', '0'],
          ...['--timeout', '30000'],
        ]);
        // Once a minute of wall time (not every 12 ticks: a tick outlasts 5 s on a loaded machine).
        if (Date.now() >= nextRestart) {
          nextRestart += 60_000;
          await cluster.stop('node-a', 'SIGKILL');
          // A start may take long on a loaded machine; readiness, not speed, is the guarantee here.
          await cluster.start('node-a', 120_000);
          restarts++;
        }
        await Promise.all([batch.exited, sleep(5000)]);
        churn.push(...batch.lines);
        const sample = {
          min: (Date.now() - started) / 60_000,
          fds: fdCount(pidB),
          rssKb: rssKb(pidB),
          heapMiB: scrapeMetrics(cluster, 'node-b').get('meshauth_nodejs_heap_size_used_bytes')! / 2 ** 20,
        };
        samples.push(sample);
        // Progress of a long run, readable before it ends.
        if (reportFile)
          appendFileSync(`${reportFile}.samples`, JSON.stringify({ ...sample, restarts }) + '\n');
      }
      const sent = Number((await sender.stop())['sent']);
      await expect
        .poll(
          async () => {
            sink.child.kill('SIGUSR1');
            await sleep(50);
            return sink.lines[sink.lines.length - 1]?.['unique'];
          },
          { timeout: 5000 },
        )
        .toBe(sent);
      expect(
        churn.filter((l) => l['ok'] !== true),
        summarize(cluster.logs('node-a'), 30),
      ).toEqual([]);
      expect(restarts).toBeGreaterThanOrEqual(MINUTES - 1);
      // SVIDs rotated on both nodes during the run.
      const audit: Record<string, { events: number; rotations: number; verified: boolean }> = {};
      for (const node of ['node-a', 'node-b']) {
        const { events, verified } = readAudit(cluster, node);
        audit[node] = {
          events: events.length,
          rotations: events.filter((e) => e.type === 'svid-rotated').length,
          verified,
        };
        expect(verified, node).toBe(true);
        expect(
          events.filter((e) => e.type === 'gap'),
          node,
        ).toEqual([]);
        expect(events.filter((e) => e.type === 'svid-rotated').length, node).toBeGreaterThan(0);
        await expect
          .poll(() => unearnedEntries(cluster, node), { message: node, timeout: 5_000 })
          .toEqual([]);
      }
      // Flat: after the first minute (warm-up), node-b's fds and RSS do not grow.
      const warm = samples.slice(Math.min(12, Math.floor(samples.length / 2)));
      const first = warm[0]!;
      const last = warm[warm.length - 1]!;
      expect(last.fds).toBeLessThanOrEqual(first.fds + 8);
      expect(last.rssKb - first.rssKb).toBeLessThan(64 * 1024);
      // V8 heap: medians of the first and last six warm samples (one GC cycle apart at most), so a
      // single sample taken just before a collection does not decide.
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
      const heapFirst = median(warm.slice(0, 6).map((s) => s.heapMiB));
      const heapLast = median(warm.slice(-6).map((s) => s.heapMiB));
      expect(heapLast - heapFirst).toBeLessThan(32);
      const mins = warm.map((s) => s.min);
      const report = JSON.stringify({
        soak: MINUTES,
        elapsedMin: Number(((Date.now() - started) / 60_000).toFixed(1)),
        restarts,
        churnedConnections: churn.length,
        liveDatagrams: sent,
        audit,
        nodeB: {
          samples: samples.length,
          fds: [first.fds, last.fds],
          rssMiB: [first.rssKb >> 10, last.rssKb >> 10],
          heapMiB: [Number(heapFirst.toFixed(1)), Number(heapLast.toFixed(1))],
          fdsPerMin: Number(
            slope(
              mins,
              warm.map((s) => s.fds),
            ).toFixed(3),
          ),
          rssKiBPerMin: Number(
            slope(
              mins,
              warm.map((s) => s.rssKb),
            ).toFixed(1),
          ),
          heapKiBPerMin: Number(
            (
              slope(
                mins,
                warm.map((s) => s.heapMiB),
              ) * 1024
            ).toFixed(1),
          ),
        },
      });
      console.info(report);
      if (reportFile) writeFileSync(reportFile, report + '\n');
    },
    (MINUTES + 3) * 60_000,
  );
});
