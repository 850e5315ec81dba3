import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditStore,
  AuditWriter,
  DROPPABLE_AUDIT_EVENTS,
  MemoryAuditSink,
  SignalAggregator,
} from '../../../src/audit/index.js';

let dir: string;
let store: AuditStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-audit-w-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const waitFor = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('AuditWriter', () => {
  it('record() returns at once and writes in batches later', async () => {
    const w = new AuditWriter(store, { flushIntervalMs: 10 });
    w.record({ type: 'reauth', outcome: 'info', localId: 'spiffe://a/x' });
    expect(store.lastSeq()).toBe(0);
    expect(w.queueDepth).toBe(1);
    await waitFor(() => store.lastSeq() === 1);
    const [e] = store.query();
    expect(e).toMatchObject({ type: 'reauth', localId: 'spiffe://a/x' });
    expect(typeof e!.atMs).toBe('number');
    void w.close();
  });

  it('groups a burst into few transactions', async () => {
    let appends = 0;
    store.onAppend(() => appends++);
    const w = new AuditWriter(store, { batchSize: 500, maxQueue: 100_000 });
    for (let i = 0; i < 5000; i++) w.record({ type: 'signal', details: { i } });
    await waitFor(() => store.lastSeq() === 5000);
    expect(appends).toBe(10);
    expect(store.verifyChain().ok).toBe(true);
    void w.close();
  });

  it('counts overflow and records one gap event once space returns', async () => {
    const depths: number[] = [];
    let droppedSeen = 0;
    const w = new AuditWriter(store, {
      maxQueue: 10,
      batchSize: 100,
      observer: { queueDepth: (d) => depths.push(d), dropped: (n) => (droppedSeen = n) },
    });
    for (let i = 0; i < 25; i++) w.record({ type: 'signal', details: { i } });
    expect(w.dropped).toBe(15);
    expect(droppedSeen).toBe(15);
    await waitFor(() => w.queueDepth === 0);
    w.record({ type: 'reauth', outcome: 'info' });
    void w.close();
    const all = store.query({ limit: 1000 });
    expect(all.map((e) => e.type)).toEqual([...Array(10).fill('signal'), 'gap', 'reauth']);
    expect(all[10]).toMatchObject({
      outcome: 'failure',
      reason: 'audit-queue-overflow',
      details: { dropped: 15 },
    });
    expect(depths.at(-1)).toBe(0);
    expect(w.stats()).toMatchObject({ dropped: 15, written: 12 });
  });

  it('a full queue still takes events that record a decision; only signal and reauth are dropped', () => {
    const w = new AuditWriter(store, { maxQueue: 4, batchSize: 100 });
    for (let i = 0; i < 4; i++) w.record({ type: 'signal', details: { i } });
    // Full: summaries are dropped, decisions are queued beyond the bound.
    w.record({ type: 'signal' });
    w.record({ type: 'entry-written', outcome: 'success', localId: 'spiffe://a/x' });
    w.record({ type: 'reauth', outcome: 'info' });
    w.record({ type: 'handshake-succeeded', outcome: 'success' });
    w.record({ type: 'handshake-failed', outcome: 'failure', reason: 'svid-untrusted' });
    w.record({ type: 'entry-removed', outcome: 'info', reason: 'bundle-revoked' });
    w.record({ type: 'entry-expired', outcome: 'info' });
    w.record({ type: 'policy-changed', outcome: 'info', reason: 'file-reload' });
    w.record({ type: 'signal' });
    expect(DROPPABLE_AUDIT_EVENTS).toEqual(new Set(['signal', 'reauth']));
    expect(w.dropped).toBe(3);
    expect(w.queueDepth).toBe(10);
    w.flush();
    const all = store.query({ limit: 100 });
    expect(all.map((e) => e.type)).toEqual([
      ...Array(4).fill('signal'),
      'entry-written',
      'handshake-succeeded',
      'handshake-failed',
      'entry-removed',
      'entry-expired',
      'policy-changed',
      'gap',
    ]);
    expect(all.at(-1)).toMatchObject({
      reason: 'audit-queue-overflow',
      details: { dropped: 3, droppedByType: { signal: 2, reauth: 1 } },
    });
    expect(w.stats()).toMatchObject({ dropped: 3, written: 11 });
    void w.close();
  });

  it('close() flushes synchronously, records a pending gap, and later records are dropped', () => {
    const w = new AuditWriter(store, { maxQueue: 2 });
    w.record({ type: 'signal' });
    w.record({ type: 'signal' });
    w.record({ type: 'signal' });
    void w.close();
    void w.close();
    expect(store.query().map((e) => e.type)).toEqual(['signal', 'signal', 'gap']);
    w.record({ type: 'signal' });
    expect(w.dropped).toBe(2);
  });

  it('never throws when the store fails; the loss becomes a gap', async () => {
    const w = new AuditWriter(store, { flushIntervalMs: 1 });
    w.record({ type: 'signal' });
    await waitFor(() => store.lastSeq() === 1);
    const p = join(dir, 'audit.db');
    store.close();
    w.record({ type: 'signal' });
    await waitFor(() => w.stats().writeErrors === 1);
    expect(w.dropped).toBe(1);
    store = AuditStore.open({ path: p });
    // a new writer on the reopened store shows the hole as it would after a restart
    void w.close();
    expect(store.lastSeq()).toBe(1);
  });
});

describe('SignalAggregator', () => {
  it('emits one event per pair and window with signal and packet counts', () => {
    const sink = new MemoryAuditSink();
    let now = 1000;
    const agg = new SignalAggregator(sink, { windowMs: 100, now: () => now });
    for (let i = 0; i < 50; i++)
      agg.observe({ localId: 'a', remoteId: 'b', node: 'n2', direction: 'egress' });
    agg.observe({ localId: 'a', remoteId: 'c', node: 'n3', direction: 'egress', packets: 7 });
    expect(sink.events.length).toBe(0);
    now = 1100;
    agg.observe({ localId: 'a', remoteId: 'b', node: 'n2', direction: 'egress' });
    expect(sink.events.length).toBe(2);
    expect(sink.events[0]).toMatchObject({
      type: 'signal',
      localId: 'a',
      remoteId: 'b',
      node: 'n2',
      direction: 'egress',
      details: { signals: 50, packets: 50, windowStartMs: 1000 },
    });
    expect(sink.events[1]).toMatchObject({ remoteId: 'c', details: { packets: 7 } });
    agg.close();
    expect(sink.events.length).toBe(3);
    expect(sink.events[2]).toMatchObject({ details: { signals: 1, windowStartMs: 1100 } });
  });

  it('folds pairs beyond maxPairs into an overflow count', () => {
    const sink = new MemoryAuditSink();
    const agg = new SignalAggregator(sink, { maxPairs: 2 });
    for (const r of ['b', 'c', 'd', 'e']) agg.observe({ localId: 'a', remoteId: r });
    agg.flush();
    expect(sink.events.length).toBe(3);
    expect(sink.events[2]).toMatchObject({ reason: 'too-many-pairs', details: { packets: 2 } });
  });
});
