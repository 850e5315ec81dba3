import { describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../../src/audit/sink.js';
import { ChannelEventAudit, UNKNOWN_NODE } from '../../../../src/auth/channel/event-audit.js';
import { FakeClock } from '../../../helpers/fake-clock.js';

function refusal(reason: string, node?: string) {
  return {
    type: 'handshake-failed' as const,
    outcome: 'failure' as const,
    reason,
    ...(node ? { node } : {}),
    details: { stage: 'channel-pair' },
  };
}

describe('ChannelEventAudit', () => {
  it('records the first perWindow refusals of a source one each and counts the rest in one summary per window', () => {
    const clock = new FakeClock(1_000_000);
    const audit = new MemoryAuditSink();
    const events = new ChannelEventAudit({ audit, clock, perWindow: 3, windowMs: 10_000 });
    for (let i = 0; i < 10; i++)
      events.record('node-a', 'pair', refusal(i % 2 ? 'proof-missing' : 'workload-moved', 'node-a'));
    // Another source has its own share.
    events.record(UNKNOWN_NODE, 'open', refusal('svid-untrusted'));
    expect(audit.events.map((e) => e.reason)).toEqual([
      'workload-moved',
      'proof-missing',
      'workload-moved',
      'svid-untrusted',
    ]);
    clock.advance(9_999);
    expect(audit.events).toHaveLength(4);
    clock.advance(1);
    expect(audit.events).toHaveLength(5);
    expect(audit.events[4]).toMatchObject({
      type: 'handshake-failed',
      outcome: 'failure',
      reason: 'rate-limited',
      node: 'node-a',
      details: {
        stage: 'channel-summary',
        source: 'node-a',
        count: 7,
        recorded: 3,
        byReason: { 'proof-missing': 4, 'workload-moved': 3 },
        byStage: { pair: 7 },
      },
    });
    expect(clock.pending).toBe(0);
    // A new window: its share again; close() writes its summary, and later events are recorded each.
    for (let i = 0; i < 5; i++) events.record(UNKNOWN_NODE, 'open', refusal('svid-untrusted'));
    expect(audit.events).toHaveLength(8);
    events.close();
    events.close();
    expect(audit.events).toHaveLength(9);
    expect(audit.events[8]).toMatchObject({
      reason: 'rate-limited',
      details: { source: UNKNOWN_NODE, count: 2 },
    });
    expect(audit.events[8]!.node).toBeUndefined();
    expect(clock.pending).toBe(0);
    events.record('node-a', 'pair', refusal('proof-missing', 'node-a'));
    expect(audit.events.at(-1)).toMatchObject({ reason: 'proof-missing' });
  });

  it('bounds the reasons it names in a summary', () => {
    const clock = new FakeClock(1_000_000);
    const audit = new MemoryAuditSink();
    const events = new ChannelEventAudit({ audit, clock, perWindow: 0 });
    for (let i = 0; i < 40; i++) events.record('node-a', 'message', refusal(`reason-${i}`));
    events.close();
    const d = audit.events[0]!.details as { count: number; byReason: Record<string, number> };
    expect(d.count).toBe(40);
    expect(Object.keys(d.byReason)).toHaveLength(33);
    expect(d.byReason['other']).toBe(8);
    expect(() => new ChannelEventAudit({ audit, clock, windowMs: 0 })).toThrow(RangeError);
  });
});
