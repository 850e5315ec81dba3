import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import { AuthReporter, type AuthObserver } from '../../../src/auth/index.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const DB = 'spiffe://demo.local/ns/demo/sa/db';
const names = { localId: WEB, remoteId: DB, node: 'node-b' };

function setup(clock?: FakeClock) {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: 'debug', base: { component: 'auth' } }, stream);
  const audit = new MemoryAuditSink();
  const metrics: unknown[][] = [];
  const observer: AuthObserver = {
    signal: (o) => metrics.push(['signal', o]),
    handshake: (r, reason, ms) => metrics.push(['handshake', r, reason, ms]),
    entries: (n) => metrics.push(['entries', n]),
    workDropped: (why) => metrics.push(['work-dropped', why]),
    channelAcceptRefused: (reason) => metrics.push(['channel-accept-refused', reason]),
  };
  const reporter = new AuthReporter({ audit, logger, observer, ...(clock ? { clock } : {}) });
  // pino writes through the stream asynchronously: settle on the stream's own queue.
  const flushed = (): Promise<void> => new Promise((r) => setImmediate(r));
  return { reporter, audit, metrics, lines, flushed };
}

describe('AuthReporter', () => {
  it('reports a client success as handshake + entry audit events, a success metric and one log line', async () => {
    const t = setup();
    const expiresAtMs = Date.UTC(2030, 0, 1);
    t.reporter.clientSucceeded(
      names,
      { why: 'signal', expiresAtMs, entryExpiresAtMs: expiresAtMs, durationMs: 12, tlsVersion: 'TLSv1.3' },
      3,
    );
    expect(t.audit.events.map((e) => [e.type, e.outcome, e.direction])).toEqual([
      ['handshake-succeeded', 'success', 'client'],
      ['entry-written', 'success', 'client'],
    ]);
    expect(t.audit.events[0]).toMatchObject({ ...names, details: { why: 'signal', durationMs: 12 } });
    expect(t.metrics).toEqual([
      ['handshake', 'success', 'ok', 12],
      ['entries', 3],
    ]);
    await t.flushed();
    expect(t.lines).toEqual([
      expect.objectContaining({
        component: 'auth',
        event: 'auth_succeeded',
        local_id: WEB,
        remote_id: DB,
        node: 'node-b',
        duration_ms: 12,
        expires_at: '2030-01-01T00:00:00.000Z',
      }),
    ]);
  });

  it('audits unreachable peers apart from other client failures', async () => {
    const t = setup();
    const base = { why: 'retry' as const, message: 'x', durationMs: 5, attempt: 2, retryInMs: 400 };
    t.reporter.clientFailed(names, { ...base, reason: 'timeout' });
    t.reporter.clientFailed(names, { ...base, reason: 'svid-untrusted' });
    expect(t.audit.events.map((e) => [e.type, e.reason])).toEqual([
      ['peer-unreachable', 'timeout'],
      ['handshake-failed', 'svid-untrusted'],
    ]);
    expect(t.audit.events[1]?.details).toEqual({
      why: 'retry',
      message: 'x',
      durationMs: 5,
      attempt: 2,
      retryInMs: 400,
    });
    expect(t.metrics).toEqual([
      ['handshake', 'failure', 'timeout', 5],
      ['handshake', 'failure', 'svid-untrusted', 5],
    ]);
    await t.flushed();
    expect(t.lines.map((l) => [l['event'], l['reason'], l['retry_in_ms']])).toEqual([
      ['auth_failed', 'timeout', 400],
      ['auth_failed', 'svid-untrusted', 400],
    ]);
  });

  it('reports the server side the same way: audit, metric, log', async () => {
    const t = setup();
    t.reporter.serverSucceeded(
      { localId: DB, remoteId: WEB, peerNode: 'node-a', expiresAtMs: 1, durationMs: 7 },
      1,
    );
    t.reporter.serverFailed({
      reason: 'svid-untrusted',
      message: 'bad chain',
      peer: '192.0.2.1:40000',
      peerAddress: '192.0.2.1',
      stage: 'verify',
      durationMs: 4,
    });
    expect(t.audit.events.map((e) => [e.type, e.outcome, e.direction, e.reason])).toEqual([
      ['handshake-succeeded', 'success', 'server', undefined],
      ['entry-written', 'success', 'server', undefined],
      ['handshake-failed', 'failure', 'server', 'svid-untrusted'],
    ]);
    expect(t.audit.events[2]?.details).toEqual({
      message: 'bad chain',
      peer: '192.0.2.1:40000',
      stage: 'verify',
      durationMs: 4,
    });
    expect(t.metrics).toEqual([
      ['entries', 1],
      ['handshake', 'success', 'ok', 7],
      ['handshake', 'failure', 'svid-untrusted', 4],
    ]);
    await t.flushed();
    expect(t.lines.map((l) => l['event'])).toEqual(['server_auth_succeeded']);
  });

  it('counts an audit-busy refusal but audits it only in the pacer episode record, not one each', () => {
    const t = setup();
    t.reporter.serverFailed({
      reason: 'audit-busy',
      message: 'audit queue at 90',
      peer: '192.0.2.1:40000',
      peerAddress: '192.0.2.1',
      stage: 'entry',
      durationMs: 4000,
    });
    expect(t.audit.events).toEqual([]);
    expect(t.metrics).toEqual([['handshake', 'failure', 'audit-busy', 4000]]);
  });

  it('audits connections refused at accept as one record per reason and window, counting each', () => {
    const clock = new FakeClock(1_000_000);
    const t = setup(clock);
    const refuse = (reason: string, address: string): void =>
      t.reporter.serverFailed({
        reason,
        message: `accept handshake: ${address} refused`,
        peer: `${address}:40000`,
        peerAddress: address,
        stage: 'accept',
        durationMs: 0,
      });
    // An anonymous flood of TCP connects (no credential): no record each.
    for (let i = 0; i < 1000; i++) refuse('rate-limited', `192.0.2.${i % 100}`);
    for (let i = 0; i < 5; i++) refuse('too-many-connections', '198.51.100.7');
    expect(t.audit.events).toEqual([]);
    // Every refusal is still a metric.
    expect(t.metrics).toHaveLength(1005);
    clock.advance(9_999);
    expect(t.audit.events).toEqual([]);
    clock.advance(1);
    expect(t.audit.events.map((e) => [e.type, e.outcome, e.direction, e.reason])).toEqual([
      ['handshake-failed', 'failure', 'server', 'rate-limited'],
      ['handshake-failed', 'failure', 'server', 'too-many-connections'],
    ]);
    const rl = t.audit.events[0]!.details as {
      count: number;
      byAddress: Record<string, number>;
      otherAddresses: number;
      stage: string;
    };
    expect(rl).toMatchObject({ count: 1000, stage: 'accept', otherAddresses: 360 });
    expect(Object.keys(rl.byAddress)).toHaveLength(64);
    expect(Object.values(rl.byAddress).reduce((a, b) => a + b, 0) + rl.otherAddresses).toBe(1000);
    expect(t.audit.events[1]!.details).toMatchObject({ count: 5, byAddress: { '198.51.100.7': 5 } });
    // Nothing pending between floods; the next one opens a new window, and close() writes it.
    expect(clock.pending).toBe(0);
    refuse('rate-limited', '192.0.2.1');
    refuse('rate-limited', '192.0.2.1');
    t.reporter.close();
    t.reporter.close();
    expect(t.audit.events).toHaveLength(3);
    expect(t.audit.events[2]!.details).toMatchObject({ count: 2, byAddress: { '192.0.2.1': 2 } });
    expect(clock.pending).toBe(0);
    // After close() (shutting down) a refusal is recorded on its own: none is lost.
    refuse('rate-limited', '192.0.2.9');
    expect(t.audit.events).toHaveLength(4);
    expect(t.audit.events[3]!.details).toMatchObject({ stage: 'accept', peer: '192.0.2.9:40000' });
  });

  it('audits the accept refusals of the node channel listener in windows of their own (listener channel)', () => {
    const clock = new FakeClock(1_000_000);
    const t = setup(clock);
    const refusal = (reason: string, address: string) => ({
      reason,
      message: `accept channel: ${address} refused`,
      peer: `${address}:40000`,
      peerAddress: address,
      stage: 'accept' as const,
      durationMs: 0,
    });
    for (let i = 0; i < 50; i++)
      t.reporter.channelAcceptRefused(refusal('too-many-connections-from-address', '192.0.2.7'));
    t.reporter.channelAcceptRefused(refusal('too-many-connections', '192.0.2.8'));
    // The same reason at the handshake server is another window, another record.
    t.reporter.serverFailed(refusal('too-many-connections', '192.0.2.9'));
    expect(t.audit.events).toEqual([]);
    expect(t.metrics.filter((m) => m[0] === 'channel-accept-refused')).toHaveLength(51);
    expect(t.metrics.filter((m) => m[0] === 'handshake')).toHaveLength(1);
    clock.advance(10_000);
    const got = t.audit.events.map((e) => {
      const d = e.details as { listener: string; count: number; byAddress: Record<string, number> };
      return [e.reason, d.listener, d.count, d.byAddress];
    });
    expect(got).toEqual([
      ['too-many-connections-from-address', 'channel', 50, { '192.0.2.7': 50 }],
      ['too-many-connections', 'channel', 1, { '192.0.2.8': 1 }],
      ['too-many-connections', 'handshake', 1, { '192.0.2.9': 1 }],
    ]);
    // After close() each is recorded on its own, with its listener.
    t.reporter.close();
    t.reporter.channelAcceptRefused(refusal('rate-limited', '192.0.2.7'));
    expect(t.audit.events).toHaveLength(4);
    expect(t.audit.events[3]).toMatchObject({
      reason: 'rate-limited',
      details: { listener: 'channel', stage: 'accept', peer: '192.0.2.7:40000' },
    });
  });

  it('still records each failure after accept (TLS, verification) on its own', () => {
    const t = setup(new FakeClock(1_000_000));
    for (const stage of ['tls', 'verify'] as const)
      t.reporter.serverFailed({
        reason: 'rate-limited',
        message: 'not an accept refusal',
        peer: '192.0.2.1:40000',
        peerAddress: '192.0.2.1',
        stage,
        durationMs: 1,
      });
    t.reporter.serverFailed({
      reason: 'protocol-error',
      message: 'garbage',
      peer: '192.0.2.1:40000',
      peerAddress: '192.0.2.1',
      stage: 'accept',
      durationMs: 1,
    });
    expect(t.audit.events.map((e) => e.reason)).toEqual(['rate-limited', 'rate-limited', 'protocol-error']);
  });

  it('counts signal outcomes and logs a full queue and unresolved pairs', async () => {
    const t = setup();
    t.reporter.signalOutcome('live');
    t.reporter.queueFull('1:2@7/1', 100);
    t.reporter.unresolved('9:2@7/1', { remoteId: DB, node: 'node-b' });
    // Work that is not a signal is counted apart: signal outcomes add up to signals received.
    t.reporter.queueFull('1:3@7/1', 100, 'reauth-expiry');
    expect(t.metrics).toEqual([
      ['signal', 'live'],
      ['signal', 'queue-full'],
      ['signal', 'unresolved'],
      ['work-dropped', 'reauth-expiry'],
    ]);
    expect(t.audit.events).toEqual([]);
    await t.flushed();
    expect(t.lines.map((l) => [l['event'], l['pair']])).toEqual([
      ['auth_queue_full', '1:2@7/1'],
      ['auth_unresolved', '9:2@7/1'],
      ['auth_queue_full', '1:3@7/1'],
    ]);
  });
});
