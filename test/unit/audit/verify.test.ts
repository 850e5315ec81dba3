import { describe, expect, it } from 'vitest';
import {
  AuditQueryError,
  GENESIS_HASH,
  rowHash,
  verifyChainRows,
  type ChainSnapshot,
  type EventRow,
} from '../../../src/audit/index.js';

/** An in-memory trail: names, rows hash-chained as the store writes them, anchor and head. */
function trail(n: number, opts: { anchorSeq?: number; anchorHash?: Buffer } = {}) {
  const names = new Map<number, string>([
    [1, 'spiffe://a.test/ns/x/sa/web'],
    [2, 'spiffe://b.test/ns/y/sa/db'],
    [3, 'node-2'],
  ]);
  const anchor = { seq: opts.anchorSeq ?? 0, hash: opts.anchorHash ?? GENESIS_HASH };
  const rows: EventRow[] = [];
  let prev = anchor.hash;
  for (let i = 1; i <= n; i++) {
    const seq = anchor.seq + i;
    const row: EventRow = {
      seq,
      ts: 1_700_000_000_000 + i,
      type: 'handshake-succeeded',
      outcome: 'success',
      reason: null,
      local_ref: 1,
      remote_ref: 2,
      node_ref: i % 2 === 0 ? 3 : null,
      direction: 'egress',
      details: i % 3 === 0 ? `{"i":${i}}` : null,
      prev_hash: prev,
      hash: Buffer.alloc(0),
    };
    row.hash = rehash(row, names);
    rows.push(row);
    prev = row.hash;
  }
  const last = rows.at(-1);
  const snapshot = (): ChainSnapshot => ({
    anchor,
    head: { seq: last?.seq ?? anchor.seq, hash: last?.hash ?? anchor.hash },
    rows,
    nameOf: (id) => names.get(id),
  });
  return { names, rows, anchor, snapshot };
}

function rehash(r: EventRow, names: Map<number, string>): Buffer {
  const name = (ref: number | null) => (ref === null ? null : (names.get(ref) ?? null));
  return rowHash({
    seq: r.seq,
    prevHash: r.prev_hash,
    ts: r.ts,
    type: r.type,
    outcome: r.outcome,
    reason: r.reason,
    localId: name(r.local_ref),
    remoteId: name(r.remote_ref),
    node: name(r.node_ref),
    direction: r.direction,
    details: r.details,
  });
}

describe('verifyChainRows (no SQLite)', () => {
  it('accepts an intact chain and reports its extent', () => {
    const t = trail(10);
    const report = verifyChainRows(t.snapshot());
    expect(report).toEqual({
      ok: true,
      checked: 10,
      anchorSeq: 0,
      firstSeq: 1,
      lastSeq: 10,
      lastHash: t.rows[9]!.hash.toString('hex'),
    });
  });

  it('accepts an empty trail', () => {
    expect(verifyChainRows(trail(0).snapshot())).toMatchObject({ ok: true, checked: 0, lastSeq: null });
  });

  it('finds a tampered row (a field changed, hash left as it was)', () => {
    const t = trail(10);
    t.rows[4]!.outcome = 'failure';
    const r = verifyChainRows(t.snapshot());
    expect(r.ok).toBe(false);
    expect(r.checked).toBe(4);
    expect(r.problem).toMatchObject({ seq: 5, kind: 'edited' });
    expect(r.problem?.message).toMatch(/seq 5: stored hash does not match its fields/);
  });

  it('finds a row rewritten with a recomputed hash by the broken link after it', () => {
    const t = trail(10);
    t.rows[4]!.reason = 'forged';
    t.rows[4]!.hash = rehash(t.rows[4]!, t.names);
    const r = verifyChainRows(t.snapshot());
    expect(r.problem).toMatchObject({ seq: 6, kind: 'broken-link' });
  });

  it('finds a deleted name: the rows that referred to it no longer hash', () => {
    const t = trail(10);
    t.names.delete(3);
    const r = verifyChainRows(t.snapshot());
    expect(r.problem).toMatchObject({ seq: 2, kind: 'edited' });
  });

  it('finds a name whose text was changed', () => {
    const t = trail(4);
    t.names.set(2, 'spiffe://b.test/ns/y/sa/other');
    expect(verifyChainRows(t.snapshot()).problem).toMatchObject({ seq: 1, kind: 'edited' });
  });

  it('finds deleted rows in the middle and at the end', () => {
    const t = trail(10);
    const snap = t.snapshot();
    const middle = verifyChainRows({ ...snap, rows: t.rows.filter((r) => r.seq !== 4 && r.seq !== 5) });
    expect(middle.problem).toMatchObject({ seq: 4, kind: 'deleted' });
    expect(middle.problem?.message).toMatch(/seqs 4\.\.5 are missing/);
    const end = verifyChainRows({ ...snap, rows: t.rows.slice(0, 7) });
    expect(end.problem).toMatchObject({ seq: 8, kind: 'truncated' });
  });

  it('finds rows moved to another seq', () => {
    const t = trail(10);
    const moved = t.rows.slice();
    moved[6] = { ...t.rows[6]!, seq: 8 };
    moved[7] = { ...t.rows[7]!, seq: 7 };
    moved.sort((a, b) => a.seq - b.seq);
    const r = verifyChainRows({ ...t.snapshot(), rows: moved });
    expect(r.problem).toMatchObject({ seq: 7, kind: 'reordered' });
  });

  it('checks the first row against the retention anchor and the anchor against the retention event', () => {
    const anchorHash = Buffer.alloc(32, 7);
    const t = trail(3, { anchorSeq: 20, anchorHash });
    // no retention event records anchor 20
    expect(verifyChainRows(t.snapshot()).problem).toMatchObject({ seq: 21, kind: 'anchor' });
    const other = verifyChainRows({ ...t.snapshot(), anchor: { seq: 20, hash: Buffer.alloc(32, 8) } });
    expect(other.problem).toMatchObject({ seq: 21, kind: 'anchor' });
  });

  it('compares checkpoints and validates them before reading rows', () => {
    const t = trail(5);
    const good = { seq: 3, hash: t.rows[2]!.hash.toString('hex') };
    expect(verifyChainRows({ ...t.snapshot(), checkpoints: [good] }).ok).toBe(true);
    const bad = verifyChainRows({ ...t.snapshot(), checkpoints: [{ seq: 3, hash: 'ab'.repeat(32) }] });
    expect(bad.problem).toMatchObject({ seq: 3, kind: 'checkpoint' });
    const past = verifyChainRows({ ...t.snapshot(), checkpoints: [{ seq: 9, hash: 'ab'.repeat(32) }] });
    expect(past.problem).toMatchObject({ seq: 9, kind: 'checkpoint' });
    expect(() => verifyChainRows({ ...t.snapshot(), checkpoints: [{ seq: 0, hash: 'x' }] })).toThrow(
      AuditQueryError,
    );
  });

  it('finds a head that does not match the last row', () => {
    const t = trail(5);
    const r = verifyChainRows({ ...t.snapshot(), head: { seq: 5, hash: Buffer.alloc(32, 1) } });
    expect(r.problem).toMatchObject({ seq: 5, kind: 'edited' });
  });
});
