import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import { ResponderAuditPacer, isPacedRefusal, type ResponderPath } from '../../../src/auth/audit-pacing.js';
import { HandshakeError } from '../../../src/auth/handshake/errors.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const WEB = 'spiffe://demo.local/ns/a/sa/web';
const DB = 'spiffe://demo.local/ns/b/sa/db';

function setUp(opts: { maxWaiting?: number } = {}) {
  const clock = new FakeClock(1_000_000);
  const queue = { depth: 0 };
  const audit = new MemoryAuditSink();
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        cb();
      },
    }),
  );
  const outcomes: Array<[string, ResponderPath]> = [];
  const pacer = new ResponderAuditPacer({
    backpressure: { depth: () => queue.depth, highWater: 80, lowWater: 50, pollMs: 20 },
    clock,
    audit,
    logger,
    onOutcome: (o, p) => outcomes.push([o, p]),
    ...(opts.maxWaiting !== undefined ? { maxWaiting: opts.maxWaiting } : {}),
  });
  return { clock, queue, audit, lines, outcomes, pacer };
}

/** Lets promise callbacks run (the settle point after a clock step). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Tracks a pending admission: 'waiting', 'admitted', or the refusal's reason. */
function track(p: Promise<void> | undefined): { state: string } {
  const t = { state: p ? 'waiting' : 'admitted' };
  p?.then(
    () => (t.state = 'admitted'),
    (err: unknown) => (t.state = err instanceof HandshakeError ? err.reason : 'other-error'),
  );
  return t;
}

const pair = { path: 'handshake' as const, peerNode: 'node-a', localId: DB, remoteId: WEB };

describe('ResponderAuditPacer', () => {
  it('admits at once, with no timer, while the queue is under its high-water mark', () => {
    const t = setUp();
    t.queue.depth = 79;
    expect(t.pacer.admit(pair, 4000)).toBeUndefined();
    expect(t.clock.pending).toBe(0);
    expect(t.pacer.stats()).toEqual({ waiting: 0, paused: 0, paced: 0, refused: 0 });
    expect(t.outcomes).toEqual([]);
  });

  it('holds a pair above high-water until the queue drains to low-water, then lets it through', async () => {
    const t = setUp();
    t.queue.depth = 80;
    const a = track(t.pacer.admit(pair, 4000));
    expect(a.state).toBe('waiting');
    expect(t.pacer.stats()).toMatchObject({ waiting: 1, paused: 1 });
    // Under high-water but above low-water: still held (hysteresis), and a new pair waits too.
    t.queue.depth = 60;
    t.clock.advance(200);
    await settle();
    expect(a.state).toBe('waiting');
    const b = track(t.pacer.admit({ ...pair, path: 'channel' }, 4000));
    expect(b.state).toBe('waiting');
    t.queue.depth = 50;
    t.clock.advance(20);
    await settle();
    expect(a.state).toBe('admitted');
    expect(b.state).toBe('admitted');
    expect(t.pacer.stats()).toEqual({ waiting: 0, paused: 0, paced: 2, refused: 0 });
    expect(t.outcomes).toEqual([
      ['paced', 'handshake'],
      ['paced', 'channel'],
    ]);
    // Nothing was refused: no audit record; the episode is logged at its start and end.
    expect(t.audit.events).toEqual([]);
    expect(t.lines.map((l) => l.event)).toEqual([
      'auth_responder_audit_backpressure',
      'auth_responder_audit_backpressure_end',
    ]);
    expect(t.lines[1]).toMatchObject({ paced: 2, refused: 0, paused_ms: 220, ended: 'drained' });
    expect(t.clock.pending).toBe(0);
    // Drained: the next pair goes through at once.
    t.queue.depth = 79;
    expect(t.pacer.admit(pair, 4000)).toBeUndefined();
  });

  it('refuses with audit-busy when the queue has not drained within the budget; one audit record per episode', async () => {
    const t = setUp();
    t.queue.depth = 95;
    const a = track(t.pacer.admit(pair, 1000));
    const b = track(t.pacer.admit({ path: 'channel', peerNode: 'node-c', localId: DB, remoteId: WEB }, 3000));
    t.clock.advance(999);
    await settle();
    expect(a.state).toBe('waiting');
    t.clock.advance(1);
    await settle();
    expect(a.state).toBe('audit-busy');
    expect(b.state).toBe('waiting');
    t.clock.advance(2000);
    await settle();
    expect(b.state).toBe('audit-busy');
    expect(t.pacer.stats()).toMatchObject({ waiting: 0, paused: 1, refused: 2, paced: 0 });
    expect(t.outcomes).toEqual([
      ['refused', 'handshake'],
      ['refused', 'channel'],
    ]);
    // While the queue is still above low-water the refusals add nothing to it.
    expect(t.audit.events).toEqual([]);
    t.queue.depth = 40;
    t.clock.advance(20);
    expect(t.audit.events).toHaveLength(1);
    expect(t.audit.events[0]).toMatchObject({
      type: 'handshake-failed',
      outcome: 'failure',
      reason: 'audit-busy',
      direction: 'server',
      details: {
        refused: 2,
        paced: 0,
        byPath: { handshake: 1, channel: 1 },
        byNode: { 'node-a': 1, 'node-c': 1 },
        pairsNotListed: 0,
        maxAuditQueue: 95,
        highWater: 80,
        lowWater: 50,
      },
    });
    expect((t.audit.events[0]!.details as { pairs: unknown[] }).pairs).toEqual([
      { path: 'handshake', node: 'node-a', localId: DB, remoteId: WEB },
      { path: 'channel', node: 'node-c', localId: DB, remoteId: WEB },
    ]);
    expect(t.pacer.stats().paused).toBe(0);
    expect(t.clock.pending).toBe(0);
  });

  it('refuses at once with no budget left or with maxWaiting pairs already waiting', async () => {
    const t = setUp({ maxWaiting: 1 });
    t.queue.depth = 100;
    const a = track(t.pacer.admit(pair, 0));
    const b = track(t.pacer.admit(pair, 1000));
    const c = track(t.pacer.admit(pair, 1000));
    await settle();
    expect(a.state).toBe('audit-busy');
    expect(b.state).toBe('waiting');
    expect(c.state).toBe('audit-busy');
    t.queue.depth = 0;
    t.clock.advance(20);
    await settle();
    expect(b.state).toBe('admitted');
    expect(t.pacer.stats()).toMatchObject({ paced: 1, refused: 2 });
    expect(t.audit.events[0]!.details).toMatchObject({ refused: 2, paced: 1 });
  });

  it('shares the places among peer nodes: one peer flooding cannot starve another, whose pair waits and is served', async () => {
    const t = setUp({ maxWaiting: 8 });
    t.queue.depth = 100;
    const from = (node: string) => ({ ...pair, path: 'channel' as const, peerNode: node });
    // node-x floods: it takes every free place, then is refused.
    const flood = [];
    for (let i = 0; i < 20; i++) flood.push(track(t.pacer.admit(from('node-x'), 4000)));
    await settle();
    expect(flood.slice(0, 8).every((f) => f.state === 'waiting')).toBe(true);
    expect(flood.slice(8).every((f) => f.state === 'audit-busy')).toBe(true);
    expect(t.pacer.stats()).toMatchObject({ waiting: 8, refused: 12 });

    // node-b, below its share (8 / 2 peers = 4): its pair waits in the place of node-x's newest.
    const b1 = track(t.pacer.admit(from('node-b'), 4000));
    await settle();
    expect(b1.state).toBe('waiting');
    expect(flood[7]!.state).toBe('audit-busy');
    expect(flood.slice(0, 7).every((f) => f.state === 'waiting')).toBe(true);
    // A third peer: shares of floor(8 / 3) = 2.
    const c1 = track(t.pacer.admit(from('node-c'), 4000));
    const b2 = track(t.pacer.admit(from('node-b'), 4000));
    await settle();
    expect([c1.state, b2.state]).toEqual(['waiting', 'waiting']);
    expect([flood[6]!.state, flood[5]!.state]).toEqual(['audit-busy', 'audit-busy']);
    // At its share node-b is refused, and node-x (over its share) cannot take places back.
    const b3 = track(t.pacer.admit(from('node-b'), 4000));
    const x = track(t.pacer.admit(from('node-x'), 4000));
    await settle();
    expect([b3.state, x.state]).toEqual(['audit-busy', 'audit-busy']);
    expect(t.pacer.stats()).toMatchObject({ waiting: 8, refused: 17 });

    // node-x's flood goes on; the other peers' pairs still wait (their budgets, not the flood, end
    // their wait) and are served once the queue drains.
    for (let i = 0; i < 50; i++) flood.push(track(t.pacer.admit(from('node-x'), 4000)));
    t.clock.advance(1000);
    await settle();
    expect([b1.state, b2.state, c1.state]).toEqual(['waiting', 'waiting', 'waiting']);
    t.queue.depth = 50;
    t.clock.advance(20);
    await settle();
    expect([b1.state, b2.state, c1.state]).toEqual(['admitted', 'admitted', 'admitted']);
    expect(flood.filter((f) => f.state === 'admitted')).toHaveLength(5);
    expect(t.pacer.stats()).toMatchObject({ waiting: 0, paused: 0, paced: 8, refused: 67 });
    // The episode's record counts every refusal by node, the displaced ones included.
    expect(t.audit.events).toHaveLength(1);
    expect(t.audit.events[0]!.details).toMatchObject({
      refused: 67,
      paced: 8,
      byNode: { 'node-x': 66, 'node-b': 1 },
    });
  });

  it('a lone peer may use every place while no other peer needs one', async () => {
    const t = setUp({ maxWaiting: 4 });
    t.queue.depth = 100;
    const waits = [];
    for (let i = 0; i < 4; i++) waits.push(track(t.pacer.admit(pair, 4000)));
    const over = track(t.pacer.admit(pair, 4000));
    await settle();
    expect(waits.every((w) => w.state === 'waiting')).toBe(true);
    expect(over.state).toBe('audit-busy');
    // Its places are its own again once another peer's pair has left (timed out).
    const other = track(t.pacer.admit({ ...pair, peerNode: 'node-b' }, 500));
    await settle();
    expect(other.state).toBe('waiting');
    expect(waits[3]!.state).toBe('audit-busy');
    t.clock.advance(500);
    await settle();
    expect(other.state).toBe('audit-busy');
    const again = track(t.pacer.admit(pair, 4000));
    await settle();
    expect(again.state).toBe('waiting');
    expect(t.pacer.stats()).toMatchObject({ waiting: 4 });
  });

  it('a pair whose connection ends while it waits is aborted, not counted, and never admitted', async () => {
    const t = setUp();
    t.queue.depth = 100;
    const ctrl = new AbortController();
    const a = track(t.pacer.admit(pair, 4000, ctrl.signal));
    ctrl.abort();
    await settle();
    expect(a.state).toBe('aborted');
    t.queue.depth = 0;
    t.clock.advance(20);
    await settle();
    expect(a.state).toBe('aborted');
    expect(t.pacer.stats()).toEqual({ waiting: 0, paused: 0, paced: 0, refused: 0 });
    expect(t.outcomes).toEqual([]);
    expect(t.audit.events).toEqual([]);
  });

  it('close() aborts the waiting pairs and records the open episode’s refusals; idempotent', async () => {
    const t = setUp();
    t.queue.depth = 100;
    const a = track(t.pacer.admit(pair, 100));
    const b = track(t.pacer.admit(pair, 4000));
    t.clock.advance(100);
    await settle();
    expect(a.state).toBe('audit-busy');
    t.pacer.close();
    t.pacer.close();
    await settle();
    expect(b.state).toBe('aborted');
    expect(t.audit.events).toHaveLength(1);
    expect(t.audit.events[0]!.details).toMatchObject({ refused: 1 });
    expect(t.lines.at(-1)).toMatchObject({
      event: 'auth_responder_audit_backpressure_end',
      ended: 'closing',
    });
    expect(t.clock.pending).toBe(0);
    await expect(t.pacer.admit(pair, 1000)).rejects.toMatchObject({ reason: 'aborted' });
  });

  it('an episode kept open records its refusals so far every summaryEveryMs, counting afresh after each record', async () => {
    const t = setUp();
    t.queue.depth = 100;
    // A peer keeps the queue above its mark: pairs keep being refused, the episode never drains.
    const refuseOne = async (node: string): Promise<void> => {
      const a = track(t.pacer.admit({ ...pair, peerNode: node }, 1000));
      t.clock.advance(1000);
      await settle();
      expect(a.state).toBe('audit-busy');
    };
    for (let i = 0; i < 3; i++) await refuseOne('node-a');
    t.clock.advance(56_980);
    await settle();
    expect(t.audit.events).toEqual([]);
    // A minute after the episode began: the refusals so far are in the trail, the episode goes on.
    t.clock.advance(20);
    expect(t.audit.events).toHaveLength(1);
    expect(t.audit.events[0]).toMatchObject({
      type: 'handshake-failed',
      reason: 'audit-busy',
      details: { refused: 3, byNode: { 'node-a': 3 }, ongoing: true, record: 1, pairsNotListed: 0 },
    });
    expect(t.pacer.stats()).toMatchObject({ paused: 1, refused: 3 });
    // A minute with no refusal writes nothing; later refusals are counted from the last record on.
    t.clock.advance(60_000);
    expect(t.audit.events).toHaveLength(1);
    await refuseOne('node-b');
    t.queue.depth = 0;
    t.clock.advance(20);
    expect(t.audit.events).toHaveLength(2);
    expect(t.audit.events[1]).toMatchObject({
      details: { refused: 1, byNode: { 'node-b': 1 }, ongoing: false, record: 2 },
    });
    const d = t.audit.events[1]!.details as { startedAtMs: number; sinceMs: number };
    expect(d.sinceMs).toBeGreaterThan(d.startedAtMs);
    // Every refusal is in exactly one record.
    const counted = t.audit.events.reduce((n, e) => n + (e.details as { refused: number }).refused, 0);
    expect(counted).toBe(t.pacer.stats().refused);
    expect(t.lines.at(-1)).toMatchObject({ event: 'auth_responder_audit_backpressure_end', refused: 4 });
    expect(t.clock.pending).toBe(0);
  });

  it('counts the refusals of peer nodes beyond the ones it names (otherNodes): none is lost from the record', async () => {
    const t = setUp({ maxWaiting: 0 });
    t.queue.depth = 100;
    const refused = [];
    for (let i = 0; i < 70; i++) refused.push(track(t.pacer.admit({ ...pair, peerNode: `node-${i}` }, 1000)));
    await settle();
    expect(refused.every((r) => r.state === 'audit-busy')).toBe(true);
    t.pacer.close();
    const d = t.audit.events[0]!.details as {
      refused: number;
      byNode: Record<string, number>;
      otherNodes: number;
      pairsNotListed: number;
    };
    expect(d.refused).toBe(70);
    expect(Object.keys(d.byNode)).toHaveLength(64);
    expect(d.otherNodes).toBe(6);
    expect(Object.values(d.byNode).reduce((a, b) => a + b, 0) + d.otherNodes).toBe(70);
    expect(d.pairsNotListed).toBe(6);
  });

  it('names its refusals audit-busy (isPacedRefusal) and rejects marks that cannot pace', () => {
    expect(isPacedRefusal('audit-busy')).toBe(true);
    expect(isPacedRefusal('peer-rejected')).toBe(false);
    expect(
      () => new ResponderAuditPacer({ backpressure: { depth: () => 0, highWater: 5, lowWater: 5 } }),
    ).toThrow(RangeError);
    expect(
      () =>
        new ResponderAuditPacer({
          backpressure: { depth: () => 0, highWater: 5, lowWater: 1 },
          summaryEveryMs: 0,
        }),
    ).toThrow(RangeError);
  });
});
