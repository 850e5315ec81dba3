import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DevCa,
  createSpireDelegatedSource,
  type IdentityEvent,
  type SpireDelegatedSource,
} from '../../../src/identity/index.js';
import type { Svid } from '../../../src/spiffe/index.js';
import { serviceDefinitions } from '../../../src/spiffe/workload/index.js';
import { FakeClock } from '../../helpers/fake-clock.js';

// The Delegated Identity API here is a stand-in server fed by the test, to reach the bad-input
// paths a real agent never produces. The same client runs against a real SPIRE agent in
// test/integration/spire/.

const TD = 'demo.local';
const WEB = `spiffe://${TD}/ns/demo/sa/web`;
const API = `spiffe://${TD}/ns/demo/sa/api`;
const selectorsOf = new Map<string, string[]>([
  [WEB, ['k8s:ns:demo', 'k8s:sa:web']],
  [API, ['k8s:ns:demo', 'k8s:sa:api']],
]);

interface WireSvid {
  x509Svid: {
    certChain: Buffer[];
    id: { trustDomain: string; path: string };
    expiresAt: number;
    hint: string;
  };
  x509SvidKey: Buffer;
}

function wire(
  svid: Svid,
  opts: { hint?: string; key?: Buffer; chain?: Buffer[]; id?: string } = {},
): WireSvid {
  const u = new URL(opts.id ?? svid.spiffeId);
  return {
    x509Svid: {
      certChain: opts.chain ?? svid.chainDer,
      id: { trustDomain: u.host, path: u.pathname },
      expiresAt: Math.floor(svid.notAfter.getTime() / 1000),
      hint: opts.hint ?? '',
    },
    x509SvidKey: opts.key ?? svid.key.export({ format: 'der', type: 'pkcs8' }),
  };
}

type Reply = { svids: WireSvid[] } | { error: grpc.status; message: string };

class FakeAgent {
  readonly server = new grpc.Server();
  socket = '';
  /** What SubscribeToX509SVIDs answers for a selector set ("k8s:ns:demo,k8s:sa:web"). */
  reply: (selectors: string) => Reply = () => ({ svids: [] });
  bundles: Record<string, Buffer> = {};
  readonly streams = new Set<grpc.ServerWritableStream<unknown, unknown>>();
  requests: string[] = [];

  async start(dir: string): Promise<void> {
    this.socket = join(dir, 'admin.sock');
    this.server.addService(serviceDefinitions().delegated, {
      SubscribeToX509SVIDs: (
        call: grpc.ServerWritableStream<{ selectors: Array<{ type: string; value: string }> }, unknown>,
      ) => {
        const key = call.request.selectors.map((s) => `${s.type}:${s.value}`).join(',');
        this.requests.push(key);
        const r = this.reply(key);
        if ('error' in r) {
          call.emit('error', { code: r.error, details: r.message });
          return;
        }
        this.streams.add(call as grpc.ServerWritableStream<unknown, unknown>);
        call.on('cancelled', () => this.streams.delete(call as grpc.ServerWritableStream<unknown, unknown>));
        call.write({ x509Svids: r.svids, federatesWith: [] });
      },
      SubscribeToX509Bundles: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        call.write({ caCertificates: this.bundles });
      },
      FetchJWTSVIDs: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb({ code: grpc.status.UNIMPLEMENTED }),
      SubscribeToJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) =>
        call.emit('error', { code: grpc.status.UNIMPLEMENTED }),
    });
    await new Promise<void>((resolve, reject) =>
      this.server.bindAsync(`unix://${this.socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }

  /** Push a new state on every open SVID stream. */
  push(svids: WireSvid[]): void {
    for (const s of this.streams) s.write({ x509Svids: svids, federatesWith: [] });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }
}

function record(source: SpireDelegatedSource): {
  events: IdentityEvent[];
  next: (pred: (e: IdentityEvent) => boolean, ms?: number) => Promise<IdentityEvent>;
} {
  const events: IdentityEvent[] = [];
  const waiters: Array<[(e: IdentityEvent) => boolean, (e: IdentityEvent) => void]> = [];
  source.subscribe((e) => {
    events.push(e);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]![0](e)) {
        waiters[i]![1](e);
        waiters.splice(i, 1);
      }
    }
  });
  return {
    events,
    next: (pred, ms = 5_000) =>
      new Promise((resolve, reject) => {
        const hit = events.find(pred);
        if (hit) return resolve(hit);
        const t = setTimeout(
          () => reject(new Error(`no matching event; saw ${JSON.stringify(events.map((e) => e.type))}`)),
          ms,
        );
        waiters.push([pred, (e) => (clearTimeout(t), resolve(e))]);
      }),
  };
}

describe('SpireDelegatedSource against a stand-in Delegated Identity server', () => {
  let dir: string;
  let ca: DevCa;
  let otherCa: DevCa;
  let agent: FakeAgent;
  let source: SpireDelegatedSource | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-spire-unit-'));
    ca = await DevCa.create(TD);
    otherCa = await DevCa.create('evil.local');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await source?.close();
    source = undefined;
    await agent?.stop();
  });

  async function setup(): Promise<void> {
    agent = new FakeAgent();
    await agent.start(mkdtempSync(join(dir, 'a-')));
    agent.bundles = { [`spiffe://${TD}`]: ca.caDer };
  }

  function open(maxMessageBytes?: number, logger?: Logger, clock?: FakeClock): SpireDelegatedSource {
    source = createSpireDelegatedSource({
      adminSocket: agent.socket,
      workloads: (id) => selectorsOf.get(id),
      retry: { baseMs: 20, maxMs: 200 },
      readyTimeoutMs: 3_000,
      ...(maxMessageBytes ? { maxMessageBytes } : {}),
      logger,
      clock,
    });
    return source;
  }

  function capture(): {
    logger: Logger;
    lines: Array<{ event?: string; reason?: string; local_id?: string; msg?: string }>;
  } {
    const lines: Array<{ event?: string; reason?: string; local_id?: string; msg?: string }> = [];
    return {
      logger: pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) }),
      lines,
    };
  }

  it('subscribes once per wanted workload with its selectors and installs verified SVIDs', async () => {
    await setup();
    const web = await ca.issue(WEB, { ttlMs: 60_000 });
    agent.reply = (sel) => (sel === 'k8s:ns:demo,k8s:sa:web' ? { svids: [wire(web)] } : { svids: [] });
    const s = open();
    s.setWanted([WEB]);
    await s.ready();
    expect(agent.requests).toEqual(['k8s:ns:demo,k8s:sa:web']);
    expect(s.svid(WEB)?.leaf.serialNumber).toBe(web.leaf.serialNumber);
    expect(s.bundles().get(TD)?.[0]?.equals(ca.caDer)).toBe(true);
  });

  it('rotates on a new message and drops the SVID when the entry disappears', async () => {
    await setup();
    const a = await ca.issue(WEB, { ttlMs: 60_000 });
    agent.reply = () => ({ svids: [wire(a)] });
    const s = open();
    const rec = record(s);
    s.setWanted([WEB]);
    await s.ready();
    const b = await ca.issue(WEB, { ttlMs: 120_000 });
    agent.push([wire(b)]);
    const upd = await rec.next(
      (e) => e.type === 'svid-updated' && e.svid.leaf.serialNumber === b.leaf.serialNumber,
    );
    expect(upd.type === 'svid-updated' && upd.previousNotAfter?.getTime()).toBe(a.notAfter.getTime());
    agent.push([]);
    const rm = await rec.next((e) => e.type === 'svid-removed');
    expect(rm.type === 'svid-removed' && rm.reason).toBe('no-registration-entry');
    expect(s.svid(WEB)).toBeUndefined();
    expect(s.state(WEB)).toBe('no-identity');
  });

  it('rejects a key that does not belong to the leaf, and keeps a held SVID on a bad renewal', async () => {
    await setup();
    const good = await ca.issue(WEB, { ttlMs: 60_000 });
    const stranger = await ca.issue(API, { ttlMs: 60_000 });
    agent.reply = () => ({
      svids: [wire(good, { key: stranger.key.export({ format: 'der', type: 'pkcs8' }) })],
    });
    const { logger, lines } = capture();
    const s = open(undefined, logger);
    const rec = record(s);
    s.setWanted([WEB]);
    await s.ready();
    expect(s.svid(WEB)).toBeUndefined();
    const st = await rec.next((e) => e.type === 'source-state' && e.state === 'no-identity');
    expect(st.type === 'source-state' && st.detail).toMatch(/key-mismatch/);

    agent.push([wire(good)]);
    await rec.next((e) => e.type === 'svid-updated');
    const bad = await ca.issue(WEB, { ttlMs: 60_000 });
    agent.push([wire(bad, { chain: [Buffer.from('not a certificate')] })]);
    // Settle point: the source has handled the bad renewal.
    await expect
      .poll(() =>
        lines.some((l) => l.local_id === WEB && l.msg === 'renewed SVID rejected; keeping the previous one'),
      )
      .toBe(true);
    expect(s.svid(WEB)?.leaf.serialNumber).toBe(good.leaf.serialNumber);
  });

  it('never trusts an SVID of a trust domain without a bundle, nor one declared under another ID', async () => {
    await setup();
    const evil = await otherCa.issue(`spiffe://evil.local/ns/demo/sa/web`, { ttlMs: 60_000 });
    const webForApi = await ca.issue(API, { ttlMs: 60_000 });
    agent.reply = (sel) =>
      sel.endsWith('sa:web')
        ? { svids: [wire(evil, { id: WEB })] }
        : { svids: [wire(webForApi, { id: API }), wire(evil)] };
    const s = open();
    const rec = record(s);
    s.setWanted([WEB, API]);
    await s.ready();
    expect(s.svid(WEB)).toBeUndefined();
    const st = await rec.next(
      (e) => e.type === 'source-state' && e.state === 'no-identity' && e.detail.includes(WEB),
    );
    expect(st.type === 'source-state' && st.detail).toMatch(/spiffe-id-mismatch/);
    // API: its own valid SVID is used; the extra evil.local SVID in the same answer is ignored.
    expect(s.svid(API)?.spiffeId).toBe(API);
  });

  it('uses the first of SVIDs with duplicate hints', async () => {
    await setup();
    const one = await ca.issue(WEB, { ttlMs: 60_000 });
    const two = await ca.issue(WEB, { ttlMs: 60_000 });
    agent.reply = () => ({ svids: [wire(one, { hint: 'internal' }), wire(two, { hint: 'internal' })] });
    const s = open();
    s.setWanted([WEB]);
    await s.ready();
    expect(s.svid(WEB)?.leaf.serialNumber).toBe(one.leaf.serialNumber);
  });

  it('rejects bundles with zero authorities or a bad trust domain, and is not ready without a usable one', async () => {
    await setup();
    agent.bundles = { [`spiffe://${TD}`]: Buffer.alloc(0), 'spiffe://Bad_TD': ca.caDer };
    const clock = new FakeClock();
    const { logger, lines } = capture();
    const s = open(undefined, logger, clock);
    s.setWanted([]);
    const ready = s.ready();
    // Settle point: the agent's bundle message arrived and was refused as a whole.
    await expect
      .poll(() => lines.some((l) => l.event === 'bundle_rejected' && l.reason === 'empty-bundle-set'))
      .toBe(true);
    clock.advance(3_000);
    await expect(ready).rejects.toThrow(/no trust bundle received/);
    expect(s.bundles().size).toBe(0);
  });

  it('reports no-identity for a workload without selectors and for PermissionDenied, without crashing', async () => {
    await setup();
    agent.reply = () => ({
      error: grpc.status.PERMISSION_DENIED,
      message: 'caller not configured as an authorized delegate',
    });
    const s = open();
    const rec = record(s);
    s.setWanted(['spiffe://demo.local/ns/demo/sa/unknown', WEB]);
    const none = await rec.next(
      (e) =>
        e.type === 'source-state' && e.state === 'no-identity' && e.detail.includes('no SPIRE selectors'),
    );
    expect(none.type).toBe('source-state');
    const denied = await rec.next(
      (e) =>
        e.type === 'source-state' && e.state === 'no-identity' && e.detail.includes('authorized_delegates'),
    );
    expect(denied.type).toBe('source-state');
    // It keeps retrying with backoff.
    await expect.poll(() => agent.requests.length, { timeout: 5_000 }).toBeGreaterThan(1);
    expect(s.subscriptions).toBe(1);
  });

  it('honours the configured message size limit', async () => {
    await setup();
    const web = await ca.issue(WEB, { ttlMs: 60_000 });
    agent.reply = () => ({ svids: [wire(web)] });
    const s = open(256);
    const rec = record(s);
    s.setWanted([WEB]);
    const e = await rec.next((x) => x.type === 'source-state' && x.state === 'disconnected');
    expect(e.type === 'source-state' && e.detail).toMatch(/RESOURCE_EXHAUSTED/);
    expect(s.svid(WEB)).toBeUndefined();
  });

  it('reconnects after the agent goes away and comes back on the same socket', async () => {
    await setup();
    const web = await ca.issue(WEB, { ttlMs: 60_000 });
    agent.reply = () => ({ svids: [wire(web)] });
    const s = open();
    const rec = record(s);
    s.setWanted([WEB]);
    await s.ready();
    const socketDir = join(agent.socket, '..');
    agent.server.forceShutdown();
    await rec.next((e) => e.type === 'source-state' && e.state === 'disconnected');
    expect(s.svid(WEB)).toBeDefined();
    // The agent that comes back has renewed the SVID, so the resubscription shows as an event.
    const renewed = await ca.issue(WEB, { ttlMs: 60_000 });
    const again = new FakeAgent();
    again.bundles = agent.bundles;
    again.reply = () => ({ svids: [wire(renewed)] });
    rmSync(agent.socket, { force: true });
    await again.start(socketDir);
    agent = again;
    const n = rec.events.length;
    await rec.next(
      (e) => e.type === 'source-state' && e.state === 'connected' && rec.events.indexOf(e) >= n,
      5_000,
    );
    await rec.next(
      (e) => e.type === 'svid-updated' && e.svid.leaf.serialNumber === renewed.leaf.serialNumber,
    );
    expect(again.requests).toEqual(['k8s:ns:demo,k8s:sa:web']);
  });
});
