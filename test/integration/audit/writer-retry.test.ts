/**
 * AuditWriter when SQLite cannot write (the disk full): the batch is kept and written again after
 * a backoff, in order, with no gap; other errors still lose the batch (counted, gap event).
 * Regression: every failed write used to drop its batch at once and re-send the gap marker in a
 * tight loop while the disk stayed full (found by test/faults/audit-disk-full.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditStore, AuditWriter } from '../../../src/audit/index.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function failingStore(code: string, failures: number) {
  const dir = mkdtempSync(join(tmpdir(), 'meshauth-writer-retry-'));
  dirs.push(dir);
  const store = AuditStore.open({ path: join(dir, 'audit.db') });
  const append = store.appendQuiet.bind(store);
  let left = failures;
  let calls = 0;
  store.appendQuiet = (events) => {
    calls++;
    if (left-- > 0) throw Object.assign(new Error(`${code}: database or disk is full`), { code });
    return append(events);
  };
  return { store, calls: () => calls };
}

describe('AuditWriter under write errors', () => {
  it('keeps and retries a batch that failed with SQLITE_FULL, in order and without a gap', async () => {
    const { store, calls } = failingStore('SQLITE_FULL', 3);
    const writer = new AuditWriter(store, { flushIntervalMs: 1 });
    for (let i = 0; i < 5; i++) writer.record({ type: 'reauth', details: { i } });
    await expect.poll(() => store.lastSeq(), { timeout: 5000 }).toBe(5);
    writer.record({ type: 'reauth', details: { i: 5 } });
    await writer.close();
    const events = store.query({});
    expect(events.map((e) => e.details?.['i'])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(events.filter((e) => e.type === 'gap')).toEqual([]);
    expect(writer.stats()).toMatchObject({ dropped: 0, writeErrors: 3 });
    // 3 failures with a backoff of 100, 200, 400 ms: not a tight loop.
    expect(calls()).toBeLessThanOrEqual(6);
    expect(store.verifyChain().ok).toBe(true);
    store.close();
  });

  it('loses a batch that failed otherwise, counts it and marks the hole with a gap', async () => {
    const { store } = failingStore('SQLITE_CONSTRAINT', 1);
    const writer = new AuditWriter(store, { flushIntervalMs: 1 });
    writer.record({ type: 'reauth', details: { i: 0 } });
    await expect.poll(() => writer.stats().dropped, { timeout: 5000 }).toBe(1);
    writer.record({ type: 'reauth', details: { i: 1 } });
    await writer.close();
    const events = store.query({});
    expect(events.map((e) => [e.type, e.details?.['dropped'] ?? e.details?.['i']])).toEqual([
      ['gap', 1],
      ['reauth', 1],
    ]);
    store.close();
  });
});
