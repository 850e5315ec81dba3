import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditStore, OtlpLogExporter } from '../../../src/audit/index.js';
import type { Clock } from '../../../src/time.js';

/** A clock whose timers run only when the test says so. */
function manualClock(): Clock & { fire(): void; pending(): number } {
  let timers: (() => void)[] = [];
  return {
    now: () => 1_700_000_000_000,
    setTimeout(fn) {
      const t = { fn, live: true };
      timers.push(() => t.live && fn());
      return { cancel: () => (t.live = false) };
    },
    setInterval() {
      return { cancel() {} };
    },
    fire() {
      const run = timers;
      timers = [];
      for (const f of run) f();
    },
    pending: () => timers.length,
  };
}

interface Received {
  seqs: number[];
  status: number;
}

/** A fake OTLP/HTTP receiver answering with the given statuses in turn (then 200). */
function receiver(statuses: number[]) {
  const got: Received[] = [];
  const fetchFn = (async (_url: string, init: { body: string }) => {
    const body = JSON.parse(init.body) as {
      resourceLogs: {
        scopeLogs: { logRecords: { attributes: { key: string; value: { intValue?: string } }[] }[] }[];
      }[];
    };
    const seqs = body.resourceLogs[0]!.scopeLogs[0]!.logRecords.map((r) =>
      Number(r.attributes.find((a) => a.key === 'meshauth.audit.seq')!.value.intValue),
    );
    const status = statuses.shift() ?? 200;
    got.push({ seqs, status });
    return new Response('{}', { status });
  }) as unknown as typeof fetch;
  return { got, fetchFn };
}

let dir: string;
let store: AuditStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-otlp-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const append = (n: number) =>
  store.append(
    Array.from({ length: n }, (_, i) => ({
      type: 'handshake-failed' as const,
      outcome: 'failure' as const,
      reason: 'svid-expired',
      atMs: 1_700_000_000_000 + i,
      localId: 'spiffe://td/ns/a/sa/web',
    })),
  );

describe('OtlpLogExporter', () => {
  it('keeps its cursor in a file: resumes after it, distrusts one of another trail or a garbled one (sent again from seq 1)', async () => {
    const cursorFile = join(dir, 'audit.db.otlp-cursor');
    const exporter = (fetchFn: typeof fetch) =>
      new OtlpLogExporter({
        store,
        endpoint: 'http://127.0.0.1:4318/v1/logs',
        node: 'node-a',
        fetch: fetchFn,
        cursorFile,
      });
    append(5);
    // no cursor yet: from the head
    const r1 = receiver([]);
    const x1 = exporter(r1.fetchFn);
    x1.start();
    append(3);
    await x1.settled();
    x1.close();
    expect(r1.got.flatMap((g) => g.seqs)).toEqual([6, 7, 8]);
    const saved = JSON.parse(readFileSync(cursorFile, 'utf8')) as { seq: number; hash: string };
    expect(saved).toEqual({ seq: 8, hash: store.query({ afterSeq: 7, limit: 1 })[0]!.hash });
    // restarted: exactly the events after the cursor
    append(2);
    const r2 = receiver([]);
    const x2 = exporter(r2.fetchFn);
    x2.start();
    await x2.settled();
    x2.close();
    expect(r2.got.flatMap((g) => g.seqs)).toEqual([9, 10]);
    // a cursor whose row has another hash belongs to a replaced trail: all of this one is sent
    writeFileSync(cursorFile, JSON.stringify({ seq: 4, hash: 'ff'.repeat(32) }));
    const r3 = receiver([]);
    const x3 = exporter(r3.fetchFn);
    x3.start();
    await x3.settled();
    x3.close();
    expect(r3.got.flatMap((g) => g.seqs)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // a garbled cursor is not trusted: all of the trail is sent again, nothing skipped
    writeFileSync(cursorFile, '{"seq": "ten"');
    const r4 = receiver([]);
    const x4 = exporter(r4.fetchFn);
    x4.start();
    append(1);
    await x4.settled();
    x4.close();
    expect(r4.got.flatMap((g) => g.seqs)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it('reads its cursor only from a regular file: a FIFO, a device or a symlink in its place neither hangs nor is followed', async () => {
    const cursorFile = join(dir, 'audit.db.otlp-cursor');
    const run = async (): Promise<number[]> => {
      const r = receiver([]);
      const x = new OtlpLogExporter({
        store,
        endpoint: 'http://127.0.0.1:4318/v1/logs',
        node: 'node-a',
        fetch: r.fetchFn,
        cursorFile,
      });
      x.start();
      append(1);
      await x.settled();
      x.close();
      return r.got.flatMap((g) => g.seqs);
    };
    append(3);
    // a FIFO: a blocking read would never return (start() is synchronous)
    execFileSync('mkfifo', [cursorFile]);
    expect(await run()).toEqual([1, 2, 3, 4]);
    expect(lstatSync(cursorFile).isFile()).toBe(true);
    // a device that never ends
    rmSync(cursorFile);
    symlinkSync('/dev/zero', cursorFile);
    expect(await run()).toEqual([1, 2, 3, 4, 5]);
    // a symlink to a cursor that would skip nothing is not followed either
    rmSync(cursorFile);
    const elsewhere = join(dir, 'elsewhere');
    writeFileSync(
      elsewhere,
      JSON.stringify({ seq: 1, hash: store.query({ afterSeq: 0, limit: 1 })[0]!.hash }),
    );
    symlinkSync(elsewhere, cursorFile);
    expect(await run()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(lstatSync(cursorFile).isFile()).toBe(true);
    // the temporary name planted as a symlink: the file it points to is not written
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'keep');
    symlinkSync(victim, `${cursorFile}.tmp`);
    expect(await run()).toEqual([7]);
    expect(readFileSync(victim, 'utf8')).toBe('keep');
    expect(JSON.parse(readFileSync(cursorFile, 'utf8'))).toMatchObject({ seq: 7 });
  });

  it('ships committed events in seq order, retrying a busy or unreachable receiver without losing any', async () => {
    const clock = manualClock();
    const { got, fetchFn } = receiver([503, 429]);
    const x = new OtlpLogExporter({
      store,
      endpoint: 'http://127.0.0.1:4318/v1/logs',
      node: 'node-a',
      batchSize: 4,
      clock,
      fetch: fetchFn,
      startAfterSeq: 0,
    });
    x.start();
    append(10);
    await waitUntil(() => clock.pending() === 1);
    clock.fire(); // second try: 429
    await waitUntil(() => clock.pending() === 1);
    clock.fire();
    await x.settled();
    expect(got.map((g) => g.status)).toEqual([503, 429, 200, 200, 200]);
    expect(got.filter((g) => g.status === 200).flatMap((g) => g.seqs)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
    ]);
    expect(x.stats()).toMatchObject({ exported: 10, retries: 2, skipped: 0, exportedSeq: 10 });
    // the trail itself never waited on the receiver
    expect(store.verifyChain()).toMatchObject({ ok: true, checked: 10 });
    x.close();
  });

  it('skips a batch the receiver rejects as bad and carries on', async () => {
    const { got, fetchFn } = receiver([400]);
    const x = new OtlpLogExporter({
      store,
      endpoint: 'http://127.0.0.1:4318/v1/logs',
      node: 'node-a',
      batchSize: 3,
      fetch: fetchFn,
      startAfterSeq: 0,
    });
    x.start();
    append(5);
    await waitUntil(() => x.stats().exportedSeq === 5);
    expect(got.map((g) => [g.status, g.seqs])).toEqual([
      [400, [1, 2, 3]],
      [200, [4, 5]],
    ]);
    expect(x.stats()).toMatchObject({ exported: 2, skipped: 3 });
    x.close();
  });

  it('refuses an endpoint that is not an http(s) URL', () => {
    expect(() => new OtlpLogExporter({ store, endpoint: 'file:///etc/passwd', node: 'n' })).toThrow(/http/);
  });
});

async function waitUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setImmediate(r));
  if (!cond()) throw new Error('condition not reached');
}
