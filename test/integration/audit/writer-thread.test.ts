import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditStore, AuditWriter, type AuditEventInput } from '../../../src/audit/index.js';
import { buildDist, ROOT } from '../cli/build-dist.js';

// The thread runs compiled code (a worker cannot load the TypeScript sources).
const SCRIPT = pathToFileURL(join(ROOT, 'dist', 'src', 'audit', 'writer-thread.js'));

let dir: string;
let store: AuditStore;
beforeAll(() => buildDist());
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-writer-thread-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const event = (i: number): AuditEventInput => ({
  type: 'handshake-succeeded',
  outcome: 'success',
  localId: `spiffe://t.test/ns/a/sa/w${i % 50}`,
  remoteId: `spiffe://t.test/ns/b/sa/w${(i * 7) % 50}`,
  node: `node-${i % 5}`,
  direction: 'client',
  details: { i, serials: ['01', '02'], tlsVersion: 'TLSv1.3' },
});

/** Record n events in slices of 2,000 per turn of the loop, as the daemon's auth path would. */
async function produce(w: AuditWriter, n: number, from = 0): Promise<void> {
  for (let i = from; i < from + n;) {
    const end = Math.min(from + n, i + 2000);
    for (; i < end; i++) w.record(event(i));
    await new Promise((r) => setImmediate(r));
  }
}

describe('AuditWriter with a writer thread', () => {
  it('commits every event in order with a valid chain, and the store hears of each batch', async () => {
    const heard: number[] = [];
    store.onAppend((seq) => heard.push(seq));
    const w = new AuditWriter(store, { thread: true, threadScript: SCRIPT, maxQueue: 100_000 });
    await produce(w, 30_000);
    await w.drain();
    expect(store.lastSeq()).toBe(30_000);
    expect(w.stats()).toMatchObject({ queued: 0, inFlight: 0, written: 30_000, dropped: 0 });
    expect(heard.at(-1)).toBe(30_000);
    expect(heard.length).toBeGreaterThan(1);
    const page = store.query({ afterSeq: 29_995, limit: 10 });
    expect(page.map((e) => e.details?.['i'])).toEqual([29_995, 29_996, 29_997, 29_998, 29_999]);
    expect(store.verifyChain()).toMatchObject({ ok: true, checked: 30_000 });
    // retention from the main connection interleaves with the thread's appends
    const pruned = store.prune({ maxRows: 10_000 });
    expect(pruned.deleted).toBe(20_000);
    await produce(w, 5_000, 30_000);
    await w.close();
    await w.close();
    expect(store.lastSeq()).toBe(35_001);
    expect(store.verifyChain()).toMatchObject({ ok: true, anchorSeq: 20_000 });
    w.record(event(1));
    expect(w.dropped).toBe(1);
  });

  it('keeps the event loop free where writing in the main thread stalls it', async () => {
    const lag = async (thread: boolean): Promise<number> => {
      const w = new AuditWriter(store, {
        thread,
        threadScript: SCRIPT,
        batchSize: 10_000,
        maxQueue: 200_000,
      });
      const h = monitorEventLoopDelay({ resolution: 5 });
      h.enable();
      await produce(w, 60_000);
      await w.drain();
      h.disable();
      await w.close();
      return h.max / 1e6;
    };
    const inMain = await lag(false);
    const inThread = await lag(true);
    expect(store.lastSeq()).toBe(120_000);
    expect(store.verifyChain().ok).toBe(true);
    // a 10,000-event transaction in the main thread blocks it for tens of milliseconds
    expect(inThread).toBeLessThan(inMain);
  });

  it('counts what a dead thread held as lost, marks the gap, and goes on writing in the main thread', async () => {
    const w = new AuditWriter(store, {
      thread: true,
      threadScript: SCRIPT,
      maxQueue: 100_000,
      batchSize: 1000,
    });
    await produce(w, 4_000);
    await w.drain();
    const worker = (w as unknown as { worker: { terminate(): Promise<number> } }).worker;
    for (let i = 0; i < 3000; i++) w.record(event(10_000 + i));
    w.flush(); // a batch goes in flight...
    await worker.terminate(); // ...and the thread dies under it
    await produce(w, 2_000, 20_000);
    await w.close();
    const st = w.stats();
    const gaps = store.query({ types: ['gap'] });
    expect(gaps).toHaveLength(1);
    expect(gaps[0]!.details).toMatchObject({ dropped: st.dropped });
    expect(st.dropped).toBeGreaterThan(0);
    // every recorded event is either committed or counted as lost; `written` includes the gap row
    expect(st.written - 1 + st.dropped).toBe(9_000);
    expect(store.lastSeq()).toBe(st.written);
    expect(store.verifyChain().ok).toBe(true);
  });
});
