import { afterEach, describe, expect, it } from 'vitest';
import { Metrics, startMetricsServer, type MetricsServer } from '../../../src/metrics/index.js';

let server: MetricsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('Metrics', () => {
  it('exports the meshauth metrics with their labels', async () => {
    const m = new Metrics({ processMetrics: false });
    const auth = m.authObserver();
    auth.handshake('success', 'ok', 4);
    auth.handshake('failure', 'svid-expired', 30);
    auth.handshake('failure', 'svid-expired', 20);
    auth.signal('queued');
    auth.signal('backoff');
    auth.entries(7);
    let verdicts: Record<string, bigint> = {
      pass: 10n,
      drop_auth_required: 2n,
      signal_throttled: 40n,
      signal_ringbuf_full: 1n,
    };
    m.setVerdictSource(() => verdicts);
    const audit = m.auditObserver();
    audit.queueDepth(12);
    audit.dropped(5);
    audit.dropped(8);
    const witness = m.witnessObserver();
    witness.refused('bad-signature', true);
    witness.refused('bad-signature', false);
    witness.refused('bad-signature', false);
    m.setSvidNotAfter('spiffe://a.test/ns/x/sa/web', Date.now() + 3600_000);
    const t = await m.text();
    expect(t).toMatch(/meshauth_handshakes_total\{result="failure",reason="svid-expired"\} 2/);
    expect(t).toMatch(/meshauth_handshakes_total\{result="success",reason="ok"\} 1/);
    expect(t).toMatch(/meshauth_handshake_duration_seconds_bucket\{le="0.025",result="failure"\} 1/);
    expect(t).toMatch(/meshauth_handshake_duration_seconds_count\{result="failure"\} 2/);
    expect(t).toMatch(/meshauth_auth_entries 7/);
    expect(t).toMatch(/meshauth_signals_received_total\{outcome="queued"\} 1/);
    expect(t).toMatch(/meshauth_datapath_verdicts_total\{verdict="pass"\} 10/);
    expect(t).toMatch(/meshauth_signals_throttled_total\{stage="kernel"\} 40/);
    expect(t).toMatch(/meshauth_signals_throttled_total\{stage="ringbuf_full"\} 1/);
    expect(t).toMatch(/meshauth_audit_queue_depth 12/);
    expect(t).toMatch(/meshauth_audit_events_dropped_total 8/);
    expect(t).toMatch(/meshauth_witness_heads_refused_total\{reason="bad-signature",recorded="true"\} 1/);
    expect(t).toMatch(/meshauth_witness_heads_refused_total\{reason="bad-signature",recorded="false"\} 2/);
    const exp = /meshauth_svid_expiry_seconds\{spiffe_id="spiffe:\/\/a.test\/ns\/x\/sa\/web"\} ([\d.]+)/.exec(
      t,
    );
    expect(Number(exp![1])).toBeGreaterThan(3590);
    expect(Number(exp![1])).toBeLessThanOrEqual(3600);
    // kernel counters are re-read on every scrape
    verdicts = { pass: 25n, drop_auth_required: 2n, signal_throttled: 41n, signal_ringbuf_full: 1n };
    const t2 = await m.text();
    expect(t2).toMatch(/meshauth_datapath_verdicts_total\{verdict="pass"\} 25/);
    expect(t2).toMatch(/meshauth_signals_throttled_total\{stage="kernel"\} 41/);
    // a failing kernel read leaves the last values rather than breaking the scrape
    m.setVerdictSource(() => {
      throw new Error('map gone');
    });
    expect(await m.text()).toMatch(/meshauth_handshakes_total/);
    m.removeSvid('spiffe://a.test/ns/x/sa/web');
    expect(await m.text()).not.toMatch(/meshauth_svid_expiry_seconds\{/);
  });

  it("exports the auth manager's queue, in-flight and backoff counts as read at scrape time", async () => {
    const m = new Metrics({ processMetrics: false });
    expect(await m.text()).not.toMatch(/meshauth_auth_queue\{/);
    let q: { queued: number; inFlight: number; backoff: number; auditBackpressure?: number } = {
      queued: 4096,
      inFlight: 16,
      backoff: 3,
      auditBackpressure: 1,
    };
    m.setAuthQueueSource(() => q);
    const t = await m.text();
    expect(t).toMatch(/meshauth_auth_queue\{state="queued"\} 4096/);
    expect(t).toMatch(/meshauth_auth_queue\{state="in_flight"\} 16/);
    expect(t).toMatch(/meshauth_auth_queue\{state="backoff"\} 3/);
    expect(t).toMatch(/meshauth_auth_queue\{state="audit_backpressure"\} 1/);
    q = { queued: 0, inFlight: 1, backoff: 0 };
    const t2 = await m.text();
    expect(t2).toMatch(/meshauth_auth_queue\{state="queued"\} 0/);
    expect(t2).toMatch(/meshauth_auth_queue\{state="audit_backpressure"\} 0/);
  });

  it('serves /metrics, /healthz and /readyz over HTTP', async () => {
    const m = new Metrics();
    let ready: boolean | { ready: boolean; reason: string } = {
      ready: false,
      reason: 'datapath not attached',
    };
    server = await startMetricsServer({ metrics: m, host: '127.0.0.1', port: 0, ready: () => ready });
    const base = `http://127.0.0.1:${server.port}`;
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/text\/plain/);
    const body = await metrics.text();
    expect(body).toMatch(/# TYPE meshauth_handshakes_total counter/);
    expect(body).toMatch(/meshauth_process_cpu_seconds_total/);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const nr = await fetch(`${base}/readyz`);
    expect(nr.status).toBe(503);
    expect(await nr.text()).toBe('not ready: datapath not attached\n');
    ready = true;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
    await server.close();
    await server.close();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  it('serves any prom-client registry', async () => {
    const { Registry, Counter } = await import('prom-client');
    const registry = new Registry();
    new Counter({ name: 'meshauth_test_total', help: 'test', registers: [registry] }).inc(3);
    server = await startMetricsServer({ registry, host: '127.0.0.1', port: 0, ready: () => true });
    const body = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
    expect(body).toMatch(/meshauth_test_total 3/);
    expect((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status).toBe(200);
    await expect(startMetricsServer({ host: '127.0.0.1', port: 0 })).rejects.toThrow(/metrics or registry/);
  });
});
