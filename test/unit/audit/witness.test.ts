import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditStore,
  checkpointText,
  ecdsaKeyId,
  MemoryAuditSink,
  openSignedHead,
  parseCheckpointText,
  signHead,
  verifyAgainstHeads,
  Witness,
  type AuditEventInput,
  type FetchedHead,
  type SignedHeadEnvelope,
} from '../../../src/audit/index.js';
import { DevCa } from '../../../src/identity/index.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import type { Svid } from '../../../src/spiffe/index.js';

const NODE_A = 'spiffe://cluster.test/meshauth/node/node-a';
const NODE_B = 'spiffe://cluster.test/meshauth/node/node-b';
const T0 = Date.now() + 60_000;

let ca: DevCa;
let other: DevCa;
let a: Svid;
let b: Svid;
let aForeign: Svid;
let dir: string;

beforeAll(async () => {
  ca = await DevCa.create('cluster.test');
  other = await DevCa.create('cluster.test');
  a = await ca.issue(NODE_A, { now: new Date(T0), ttlMs: 86_400_000 });
  b = await ca.issue(NODE_B, { now: new Date(T0), ttlMs: 86_400_000 });
  aForeign = await other.issue(NODE_A, { now: new Date(T0), ttlMs: 86_400_000 });
  dir = mkdtempSync(join(tmpdir(), 'meshauth-witness-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const bundles = () => new Map([['cluster.test', [ca.caDer]]]);
const env = (note: string, svid: Svid): SignedHeadEnvelope => ({ note, certChain: svid.chainDer });
const headOf = (seq: number, hashByte = 1, atMs = T0 + 1000) => ({
  origin: NODE_A.slice('spiffe://'.length),
  treeSize: seq,
  hash: Buffer.alloc(32, hashByte),
  atMs,
  node: 'node-a',
});

describe('signed audit heads (C2SP tlog-checkpoint in a signed note)', () => {
  it('writes the checkpoint body and one ECDSA signature line named after the origin', () => {
    const note = signHead(headOf(42), a);
    const [body, sigLine] = note.split('\n\n');
    expect(body + '\n').toBe(checkpointText(headOf(42)));
    expect(body!.split('\n').slice(0, 3)).toEqual([
      'cluster.test/meshauth/node/node-a',
      '42',
      Buffer.alloc(32, 1).toString('base64'),
    ]);
    const m = /^\u2014 (\S+) (\S+)\n$/u.exec(sigLine!)!;
    expect(m[1]).toBe('cluster.test/meshauth/node/node-a');
    const blob = Buffer.from(m[2]!, 'base64');
    expect(blob.subarray(0, 4)).toEqual(ecdsaKeyId(new X509Certificate(a.chainDer[0]!).publicKey));
    expect(parseCheckpointText(body + '\n')).toEqual(headOf(42));
  });

  it('verifies against the SVID chain and the trust bundle', () => {
    const v = openSignedHead(signHead(headOf(7), a), a.chainDer, bundles(), { now: new Date(T0 + 2000) });
    expect(v.spiffeId).toBe(NODE_A);
    expect(v.head.treeSize).toBe(7);
  });

  it.each([
    ['a changed seq', (n: string) => n.replace('\n7\n', '\n8\n'), 'bad-signature'],
    [
      'a changed hash',
      (n: string) =>
        n.replace(Buffer.alloc(32, 1).toString('base64'), Buffer.alloc(32, 2).toString('base64')),
      'bad-signature',
    ],
    ['no signature', (n: string) => n.split('\n\n')[0] + '\n', 'malformed'],
    ['a control character', (n: string) => n.replace('node-a\n', 'node-a\u0007\n'), 'malformed'],
  ])('refuses a note with %s', (_what, edit, reason) => {
    const note = edit(signHead(headOf(7), a));
    expect(() => openSignedHead(note, a.chainDer, bundles(), { now: new Date(T0 + 2000) })).toThrow(
      expect.objectContaining({ reason }),
    );
  });

  it('refuses a head signed by another node or a chain outside the bundle', () => {
    const byB = signHead({ ...headOf(7), origin: NODE_B.slice(9) }, b);
    expect(() =>
      openSignedHead(byB, b.chainDer, bundles(), { now: new Date(T0 + 2000), expectSpiffeId: NODE_A }),
    ).toThrow(expect.objectContaining({ reason: 'wrong-node' }));
    // B signs a head that claims A's origin
    const forged = signHead(headOf(7), b);
    expect(() => openSignedHead(forged, b.chainDer, bundles(), { now: new Date(T0 + 2000) })).toThrow(
      expect.objectContaining({ reason: 'wrong-node' }),
    );
    // ... or presents A's chain with its own signature
    expect(() => openSignedHead(forged, a.chainDer, bundles(), { now: new Date(T0 + 2000) })).toThrow(
      expect.objectContaining({ reason: 'bad-signature' }),
    );
    const foreign = signHead(headOf(7), aForeign);
    expect(() => openSignedHead(foreign, aForeign.chainDer, bundles(), { now: new Date(T0 + 2000) })).toThrow(
      expect.objectContaining({ reason: 'untrusted-signer' }),
    );
  });
});

function openStore(name: string): AuditStore {
  return AuditStore.open({ path: join(dir, `${name}.db`) });
}

describe('Witness', () => {
  it('records accepted heads, refuses replayed, conflicting and forged ones with a reason', () => {
    const store = openStore('witness-b');
    const sink = new MemoryAuditSink();
    const witness = new Witness({ sink, store, bundles, clock: fixedClock(T0 + 5000) });
    const first = witness.submit(env(signHead(headOf(10), a), a), NODE_A);
    expect(first).toMatchObject({ accepted: true, duplicate: false });
    expect(witness.submit(env(signHead(headOf(10), a), a), NODE_A)).toMatchObject({
      accepted: true,
      duplicate: true,
    });
    expect(witness.submit(env(signHead(headOf(9), a), a), NODE_A)).toMatchObject({
      accepted: false,
      reason: 'replayed',
    });
    expect(witness.submit(env(signHead(headOf(10, 9), a), a), NODE_A)).toMatchObject({
      accepted: false,
      reason: 'conflicting-head',
    });
    expect(witness.submit(env(signHead(headOf(11), a), a), NODE_B)).toMatchObject({
      accepted: false,
      reason: 'wrong-node',
    });
    expect(witness.submit(env(signHead(headOf(11), a), a), undefined)).toMatchObject({
      accepted: false,
      reason: 'not-allowed',
    });
    const tampered = signHead(headOf(12), a).replace('\n12\n', '\n13\n');
    expect(witness.submit(env(tampered, a), NODE_A)).toMatchObject({
      accepted: false,
      reason: 'bad-signature',
    });
    const witnessed = sink.events.filter((e) => e.type === 'head-witnessed');
    expect(witnessed).toHaveLength(1);
    expect(witnessed[0]).toMatchObject({ remoteId: NODE_A, node: 'node-a', details: { seq: 10 } });
    expect(sink.events.filter((e) => e.type === 'head-rejected').map((e) => e.reason)).toEqual([
      'replayed',
      'conflicting-head',
      'wrong-node',
      'not-allowed',
      'bad-signature',
    ]);
    store.close();
  });

  it('remembers the newest witnessed head across restarts (replay refused from the stored trail)', () => {
    const store = openStore('witness-restart');
    const w1 = new Witness({ sink: sinkOf(store), store, bundles, clock: fixedClock(T0 + 5000) });
    expect(w1.submit(env(signHead(headOf(20), a), a), NODE_A).accepted).toBe(true);
    const w2 = new Witness({ sink: sinkOf(store), store, bundles, clock: fixedClock(T0 + 6000) });
    expect(w2.submit(env(signHead(headOf(19), a), a), NODE_A)).toMatchObject({ reason: 'replayed' });
    expect(w2.list(NODE_A).map((h) => h.note.split('\n')[1])).toEqual(['20']);
    store.close();
  });

  it('refuses a head whose time is more than the allowed skew from the witness clock', () => {
    const store = openStore('witness-skew');
    const sink = new MemoryAuditSink();
    const witness = new Witness({ sink, store, bundles, clock: fixedClock(T0 + 3_600_000) });
    for (const atMs of [T0 + 3_600_000 - 300_001, T0 + 3_600_000 + 300_001]) {
      const r = witness.submit(env(signHead(headOf(30, 1, atMs), a), a), NODE_A);
      expect(r).toMatchObject({ accepted: false, reason: 'clock-skew' });
      expect(!r.accepted && r.message).toMatch(/more than 300000 ms apart/);
    }
    expect(
      witness.submit(env(signHead(headOf(30, 1, T0 + 3_600_000 - 300_000), a), a), NODE_A),
    ).toMatchObject({
      accepted: true,
    });
    expect(sink.events.filter((e) => e.type === 'head-witnessed')).toHaveLength(1);
    store.close();
  });

  it('checks the SVID at its own receive time and dates the row with it: back-dated heads do not pass', async () => {
    const store = openStore('witness-backdate');
    const sink = new MemoryAuditSink();
    // a key stolen from an SVID that expired at T0 + 1h
    const stolen = await ca.issue(NODE_A, { now: new Date(T0), ttlMs: 3_600_000 });
    const later = T0 + 2 * 3_600_000;
    // even a witness that allows any skew refuses it: the SVID is not valid when the head arrives
    const lax = new Witness({ sink, store, bundles, maxSkewMs: 86_400_000, clock: fixedClock(later) });
    const backdated = lax.submit(env(signHead(headOf(40, 1, T0 + 1000), stolen), stolen), NODE_A);
    expect(backdated).toMatchObject({ accepted: false, reason: 'untrusted-signer' });
    // with a valid SVID, a head dated an hour back is refused by the skew limit (configurable)
    const strict = new Witness({
      sink,
      store,
      bundles,
      maxSkewMs: 60_000,
      clock: fixedClock(T0 + 3_600_000),
    });
    expect(strict.submit(env(signHead(headOf(40, 1, T0 + 1000), a), a), NODE_A)).toMatchObject({
      accepted: false,
      reason: 'clock-skew',
    });
    const ok = strict.submit(env(signHead(headOf(40, 1, T0 + 3_600_000 - 59_000), a), a), NODE_A);
    expect(ok).toMatchObject({ accepted: true });
    const row = sink.events.find((e) => e.type === 'head-witnessed')!;
    expect(row.atMs).toBe(T0 + 3_600_000);
    expect(row.details).toMatchObject({ headAtMs: T0 + 3_600_000 - 59_000 });
    store.close();
  });

  it('records refusals per submitter up to a limit, then one summary row per interval; accepted heads are never limited', () => {
    const store = openStore('witness-flood');
    const sink = new MemoryAuditSink();
    const clock = new FakeClock(T0 + 5000);
    const counted: [string, boolean][] = [];
    const witness = new Witness({
      sink,
      store,
      bundles,
      clock,
      refusalLimit: { burst: 3, perMinute: 60, summaryIntervalMs: 10_000 },
      observer: { refused: (reason, recorded) => counted.push([reason, recorded]) },
    });
    const tampered = signHead(headOf(12), a).replace('\n12\n', '\n13\n');
    // node A floods the witness with 10 forged heads and 2 submitted under another name
    const flood = Array.from({ length: 10 }, () => witness.submit(env(tampered, a), NODE_A));
    expect(flood.every((r) => !r.accepted && r.reason === 'bad-signature')).toBe(true);
    // the caller is told the reason either way; the result says which ones were only summarised
    expect(flood.map((r) => !r.accepted && r.summarised === true)).toEqual([
      false,
      false,
      false,
      true,
      true,
      true,
      true,
      true,
      true,
      true,
    ]);
    for (let i = 0; i < 2; i++)
      expect(witness.submit(env(signHead(headOf(11), b), b), NODE_A)).toMatchObject({ reason: 'wrong-node' });
    const rejected = () => sink.events.filter((e) => e.type === 'head-rejected');
    expect(rejected().map((e) => e.reason)).toEqual(['bad-signature', 'bad-signature', 'bad-signature']);
    // another submitter has its own bucket
    expect(witness.submit(env(tampered, a), NODE_B)).toMatchObject({ accepted: false });
    expect(rejected()).toHaveLength(4);
    // nothing accepted is dropped, whatever the flood
    expect(witness.submit(env(signHead(headOf(10), a), a), NODE_A)).toMatchObject({ accepted: true });
    expect(sink.events.filter((e) => e.type === 'head-witnessed')).toHaveLength(1);
    expect(counted.filter(([, rec]) => !rec)).toHaveLength(9);
    expect(counted.filter(([, rec]) => rec)).toHaveLength(4);
    // the interval ends: one summary row for node A with every reason counted
    clock.advance(10_000);
    const summary = rejected().slice(4);
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({
      outcome: 'failure',
      reason: 'rate-limited',
      remoteId: NODE_A,
      details: { refused: 9, reasons: { 'bad-signature': 7, 'wrong-node': 2 } },
    });
    // the bucket refilled meanwhile (1 a second): the next refusal is a row of its own again
    expect(witness.submit(env(tampered, a), NODE_A)).toMatchObject({ reason: 'bad-signature' });
    expect(rejected().at(-1)).toMatchObject({ reason: 'bad-signature', remoteId: NODE_A });
    // pending summaries are written on close
    for (let i = 0; i < 5; i++) witness.submit(env(tampered, a), NODE_A);
    const before = rejected().length;
    witness.close();
    expect(rejected().length).toBe(before + 1);
    expect(rejected().at(-1)).toMatchObject({ reason: 'rate-limited' });
    store.close();
  });

  it("refuses a node's own head, and never takes heads it witnessed for others as that node's", () => {
    const store = openStore('witness-self');
    // node B's trail: B (local_id) witnessed node A's head at seq 20
    const w1 = new Witness({
      sink: sinkOf(store),
      store,
      bundles,
      selfId: NODE_B,
      clock: fixedClock(T0 + 5000),
    });
    expect(w1.submit(env(signHead(headOf(20), a), a), NODE_A).accepted).toBe(true);
    const headOfB = (seq: number) => ({
      ...headOf(seq),
      origin: NODE_B.slice('spiffe://'.length),
      node: 'node-b',
    });
    // B listing itself as its own witness: refused by name, not as a "replay" of A's seq 20
    const self = w1.submit(env(signHead(headOfB(5), b), b), NODE_B);
    expect(self).toMatchObject({ accepted: false, reason: 'not-allowed' });
    expect(!self.accepted && self.message).toMatch(/its own audit head/);
    // a witness whose own ID changed (new SVID path) still keys heads by the submitting node only
    const w2 = new Witness({
      sink: sinkOf(store),
      store,
      bundles,
      selfId: NODE_A,
      clock: fixedClock(T0 + 6000),
    });
    expect(w2.submit(env(signHead(headOfB(5), b), b), NODE_B)).toMatchObject({
      accepted: true,
      duplicate: false,
    });
    expect(w2.list(NODE_B).map((h) => h.note.split('\n')[1])).toEqual(['5']);
    store.close();
  });
});

function sinkOf(store: AuditStore) {
  return { record: (e: AuditEventInput) => void store.append([e]) };
}

function fixedClock(now: number) {
  return {
    now: () => now,
    setTimeout: () => ({ cancel() {} }),
    setInterval: () => ({ cancel() {} }),
  };
}

/** The same event stream a node would write; `variant` changes events from that index on. */
function events(n: number, variant?: { from: number }): AuditEventInput[] {
  return Array.from({ length: n }, (_, i) => ({
    type: 'handshake-succeeded' as const,
    outcome: 'success' as const,
    atMs: T0 + i,
    localId: 'spiffe://cluster.test/ns/a/sa/web',
    remoteId:
      variant && i + 1 >= variant.from
        ? 'spiffe://cluster.test/ns/x/sa/innocent'
        : 'spiffe://cluster.test/ns/b/sa/db',
  }));
}

function headAt(store: AuditStore, seq: number, witness = 'node-b'): FetchedHead {
  const rows = store.query({ afterSeq: seq - 1, limit: 1 });
  const note = signHead({ ...headOf(seq), hash: Buffer.from(rows[0]!.hash, 'hex'), atMs: T0 + 10_000 }, a);
  return { note, certChain: a.chainDer, witness, witnessedAtMs: T0 + 10_500 };
}

describe('verifyAgainstHeads', () => {
  it('passes an intact trail and reports the first divergent witnessed seq of a rewritten one', () => {
    const honest = openStore('honest');
    honest.append(events(100));
    const heads = [headAt(honest, 30), headAt(honest, 60, 'relay'), headAt(honest, 100)];
    const ok = verifyAgainstHeads(honest, NODE_A, heads, bundles());
    expect(ok).toMatchObject({ ok: true, headsMatched: 3, lastMatchedSeq: 100 });

    // root rewrites the trail from seq 41 on with every hash recomputed, and keeps appending
    const forged = openStore('forged');
    forged.append(events(120, { from: 41 }));
    expect(forged.verifyChain().ok).toBe(true);
    const r = verifyAgainstHeads(forged, NODE_A, heads, bundles());
    expect(r.ok).toBe(false);
    expect(r.problem).toMatchObject({ kind: 'rewritten', seq: 60, range: [31, 60] });
    expect(r.lastMatchedSeq).toBe(30);
    honest.close();
    forged.close();
  });

  it('reports a truncated trail and a forked one', () => {
    const s = openStore('trunc');
    s.append(events(50));
    const long = openStore('long');
    long.append(events(80));
    const r = verifyAgainstHeads(s, NODE_A, [headAt(long, 40), headAt(long, 80)], bundles());
    expect(r.problem).toMatchObject({ kind: 'truncated', seq: 51, range: [51, 80] });
    const other = openStore('fork-other');
    other.append(events(80, { from: 70 }));
    const f = verifyAgainstHeads(
      long,
      NODE_A,
      [headAt(long, 80, 'node-b'), headAt(other, 80, 'node-c')],
      bundles(),
    );
    expect(f.problem).toMatchObject({ kind: 'fork', seq: 80 });
    expect(f.forkedSeqs).toEqual([80]);
    // a rewrite before the fork is the first divergence: reported as such, the fork listed too
    const f2 = verifyAgainstHeads(
      other,
      NODE_A,
      [headAt(long, 70, 'node-b'), headAt(long, 80, 'node-b'), headAt(other, 80, 'node-c')],
      bundles(),
    );
    expect(f2.problem).toMatchObject({ kind: 'rewritten', seq: 70 });
    expect(f2.forkedSeqs).toEqual([80]);
    // and a fork before a rewrite is reported as the fork
    const early = openStore('fork-early');
    early.append(events(80, { from: 50 }));
    const f3 = verifyAgainstHeads(
      other,
      NODE_A,
      [headAt(long, 60, 'node-b'), headAt(early, 60, 'node-c'), headAt(long, 80, 'node-b')],
      bundles(),
    );
    expect(f3.problem).toMatchObject({ kind: 'fork', seq: 60 });
    expect(f3.forkedSeqs).toEqual([60]);
    for (const x of [s, long, other, early]) x.close();
  });

  it('ignores heads a lying witness altered: it cannot frame an honest node', () => {
    const s = openStore('framed');
    s.append(events(50));
    const good = headAt(s, 50, 'node-b');
    const lie: FetchedHead = {
      ...good,
      witness: 'node-c',
      note: good.note.replace(/\n[A-Za-z0-9+/=]{44}\n/, `\n${Buffer.alloc(32, 7).toString('base64')}\n`),
    };
    // ... nor by signing a head itself under the node's name
    const selfSigned: FetchedHead = {
      note: signHead({ ...headOf(50, 7), atMs: T0 + 10_000 }, b),
      certChain: b.chainDer,
      witness: 'node-c',
      witnessedAtMs: T0 + 10_500,
    };
    const r = verifyAgainstHeads(s, NODE_A, [good, lie, selfSigned], bundles());
    expect(r.ok).toBe(true);
    expect(r.refused.map((x) => [x.witness, x.reason])).toEqual([
      ['node-c', 'bad-signature'],
      ['node-c', 'wrong-node'],
    ]);
    s.close();
  });

  it("checks each head's SVID at the witness's receive time, not the time the head claims", async () => {
    const s = openStore('receive-time');
    s.append(events(50));
    const stolen = await ca.issue(NODE_A, { now: new Date(T0), ttlMs: 3_600_000 });
    const hash = Buffer.from(s.query({ afterSeq: 49, limit: 1 })[0]!.hash, 'hex');
    const note = signHead({ ...headOf(50), hash, atMs: T0 + 10_000 }, stolen);
    // signed while valid and received then: counts
    const fresh: FetchedHead = {
      note,
      certChain: stolen.chainDer,
      witness: 'node-b',
      witnessedAtMs: T0 + 10_500,
    };
    expect(verifyAgainstHeads(s, NODE_A, [fresh], bundles())).toMatchObject({ ok: true, headsMatched: 1 });
    // the same back-dated head received after the SVID expired (a witness without the check kept
    // it): refused, as is one without a receive time, and one dated far from its receipt
    const late = { ...fresh, witness: 'node-c', witnessedAtMs: T0 + 2 * 3_600_000 };
    const noTime = { ...fresh, witness: 'node-d', witnessedAtMs: 0 };
    const skewed = { ...fresh, witness: 'node-e', witnessedAtMs: T0 + 10_000 + 301_000 };
    const r = verifyAgainstHeads(s, NODE_A, [late, noTime, skewed], bundles());
    expect(r.refused.map((x) => [x.witness, x.reason])).toEqual([
      ['node-c', 'untrusted-signer'],
      ['node-d', 'malformed'],
      ['node-e', 'clock-skew'],
    ]);
    expect(r.headsMatched).toBe(0);
    // the verifier's skew limit is an option (the witnesses' own limit)
    expect(verifyAgainstHeads(s, NODE_A, [skewed], bundles(), { maxSkewMs: 600_000 }).headsMatched).toBe(1);
    s.close();
  });

  it('keeps a pruned range provable: heads below the anchor are counted, the anchor hash checked', () => {
    const s = openStore('pruned');
    s.append(events(100));
    const heads = [headAt(s, 20), headAt(s, 50), headAt(s, 90)];
    s.prune({ maxRows: 50 }, T0 + 100_000);
    expect(s.stats().anchorSeq).toBe(50);
    const r = verifyAgainstHeads(s, NODE_A, heads, bundles());
    expect(r).toMatchObject({ ok: true, headsPruned: 1, headsMatched: 2 });
    s.close();
  });
});
