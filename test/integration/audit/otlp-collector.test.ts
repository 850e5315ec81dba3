/**
 * Audit events shipped to a real OpenTelemetry Collector (core modules built from the Go module
 * proxy by scripts/build-otelcol.sh: OTLP receiver, debug exporter) over OTLP/HTTP: every committed
 * event arrives with its attributes, and while the collector is down the trail keeps recording and
 * the exporter retries until the restarted collector has every event.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditStore, OtlpLogExporter } from '../../../src/audit/index.js';
import { freePort } from '../../helpers/ports.js';

const ROOT = join(import.meta.dirname, '../../..');
let bin: string;
let dir: string;
let port: number;
let collector: ChildProcess | undefined;
let output = '';

async function startCollector(): Promise<void> {
  output = '';
  const c = spawn(bin, ['--config', `file:${join(dir, 'otelcol.yaml')}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  collector = c;
  c.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  c.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  await waitFor(
    () => /Everything is ready/.test(output),
    30_000,
    () => `collector did not start:\n${output}`,
  );
}

async function stopCollector(): Promise<void> {
  const c = collector;
  collector = undefined;
  if (!c || c.exitCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await exited;
}

async function waitFor(cond: () => boolean, ms: number, why: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(why());
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Seqs the collector's debug exporter printed (since output offset `from`). */
function seqsSeen(from = 0): number[] {
  return [...output.slice(from).matchAll(/meshauth\.audit\.seq: Int\((\d+)\)/g)].map((m) => Number(m[1]));
}

beforeAll(async () => {
  // scripts/test.sh builds the collector before the suite and exports its path; a lone run builds it.
  const built = process.env['MESHAUTH_OTELCOL'];
  if (built) {
    bin = built;
  } else {
    const r = spawnSync('bash', [join(ROOT, 'scripts/build-otelcol.sh')], {
      encoding: 'utf8',
      timeout: 1_500_000,
    });
    if (r.status !== 0) throw new Error(`build-otelcol failed:\n${r.stderr}`);
    bin = r.stdout.trim().split('\n').at(-1)!;
  }
  dir = mkdtempSync(join(tmpdir(), 'meshauth-otlp-'));
  port = await freePort();
  writeFileSync(
    join(dir, 'otelcol.yaml'),
    `receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${port}
exporters:
  debug:
    verbosity: detailed
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
`,
  );
  await startCollector();
}, 1_600_000);

afterAll(async () => {
  await stopCollector();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('OTLP export to the OpenTelemetry Collector', () => {
  it('delivers every committed event, and catches up after the collector was down', async () => {
    const store = AuditStore.open({ path: join(dir, 'audit.db') });
    const exporter = new OtlpLogExporter({
      store,
      endpoint: `http://127.0.0.1:${port}/v1/logs`,
      node: 'node-a',
      batchSize: 8,
      backoffMs: 100,
      maxBackoffMs: 400,
      startAfterSeq: 0,
    });
    try {
      exporter.start();
      const batch = (from: number, n: number) =>
        Array.from({ length: n }, (_, i) => ({
          type: 'handshake-failed' as const,
          outcome: 'failure' as const,
          reason: 'svid-expired',
          atMs: Date.now(),
          localId: 'spiffe://td/ns/a/sa/web',
          remoteId: `spiffe://td/ns/b/sa/db-${from + i}`,
        }));
      store.append(batch(1, 20));
      await waitFor(
        () => seqsSeen().includes(20),
        20_000,
        () => `seq 20 never arrived:\n${output.slice(-2000)}`,
      );
      expect(seqsSeen()).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(output).toMatch(/meshauth\.audit\.reason: Str\(svid-expired\)/);
      expect(output).toMatch(/host\.name: Str\(node-a\)/);
      expect(output).toMatch(/SeverityText: WARN/);

      await stopCollector();
      store.append(batch(21, 10));
      // the trail does not wait for the receiver
      expect(store.lastSeq()).toBe(30);
      await waitFor(
        () => exporter.stats().retries >= 2,
        10_000,
        () => 'the exporter did not retry',
      );
      expect(exporter.stats().exportedSeq).toBe(20);
      await startCollector();
      await waitFor(
        () => seqsSeen().includes(30),
        20_000,
        () => `seq 30 never arrived:\n${output.slice(-2000)}`,
      );
      expect(seqsSeen()).toEqual(Array.from({ length: 10 }, (_, i) => i + 21));
      expect(exporter.stats()).toMatchObject({ exported: 30, skipped: 0, exportedSeq: 30 });
      expect(store.verifyChain()).toMatchObject({ ok: true, checked: 30 });
    } finally {
      exporter.close();
      store.close();
    }
  }, 60_000);

  it('resumes after the last acknowledged event when the exporter restarts: nothing re-sent, nothing skipped', async () => {
    const path = join(dir, 'restart.db');
    const cursorFile = `${path}.otlp-cursor`;
    const events = (n: number) =>
      Array.from({ length: n }, () => ({
        type: 'reauth' as const,
        outcome: 'info' as const,
        reason: 'restart',
        atMs: Date.now(),
      }));
    const exporterOf = (store: AuditStore) =>
      new OtlpLogExporter({
        store,
        endpoint: `http://127.0.0.1:${port}/v1/logs`,
        node: 'node-r',
        batchSize: 5,
        backoffMs: 100,
        maxBackoffMs: 400,
        cursorFile,
      });
    // first run: the trail has 3 events before the exporter ever ran (first start: from the head)
    let store = AuditStore.open({ path });
    store.append(events(3));
    let exporter = exporterOf(store);
    let from = output.length;
    try {
      exporter.start();
      store.append(events(12));
      await waitFor(
        () => seqsSeen(from).includes(15),
        20_000,
        () => `seq 15 never arrived:\n${output.slice(-2000)}`,
      );
      await exporter.settled();
      expect(seqsSeen(from)).toEqual(Array.from({ length: 12 }, (_, i) => i + 4));
    } finally {
      exporter.close();
      store.close();
    }
    // the daemon is down; its trail grows meanwhile (another process, or events of its last moments)
    store = AuditStore.open({ path });
    store.append(events(6));
    from = output.length;
    exporter = exporterOf(store);
    try {
      exporter.start();
      await waitFor(
        () => seqsSeen(from).includes(21),
        20_000,
        () => `seq 21 never arrived:\n${output.slice(-2000)}`,
      );
      await exporter.settled();
      expect(seqsSeen(from)).toEqual([16, 17, 18, 19, 20, 21]);
      // the collector goes down: what it did not acknowledge is sent after the next restart
      await stopCollector();
      store.append(events(4));
      await waitFor(
        () => exporter.stats().retries >= 1,
        10_000,
        () => 'the exporter did not retry',
      );
    } finally {
      exporter.close();
      store.close();
    }
    await startCollector();
    from = 0;
    store = AuditStore.open({ path });
    exporter = exporterOf(store);
    try {
      exporter.start();
      await waitFor(
        () => seqsSeen(from).includes(25),
        20_000,
        () => `seq 25 never arrived:\n${output.slice(-2000)}`,
      );
      await exporter.settled();
      expect(seqsSeen(from)).toEqual([22, 23, 24, 25]);
      expect(store.verifyChain()).toMatchObject({ ok: true, checked: 25 });
    } finally {
      exporter.close();
      store.close();
    }
  }, 90_000);
});
