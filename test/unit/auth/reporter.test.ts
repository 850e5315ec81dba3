import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import { AuthReporter, type AuthObserver } from '../../../src/auth/index.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const DB = 'spiffe://demo.local/ns/demo/sa/db';
const names = { localId: WEB, remoteId: DB, node: 'node-b' };

function setup() {
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
  };
  const reporter = new AuthReporter({ audit, logger, observer });
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
