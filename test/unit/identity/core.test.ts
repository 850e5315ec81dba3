import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  DevCa,
  IdentitySourceCore,
  REASON_EXPIRED,
  REASON_NOT_WANTED,
  type IdentityEvent,
  type IdentitySourceCoreOptions,
  type Readiness,
} from '../../../src/identity/index.js';
import type { Svid } from '../../../src/spiffe/index.js';
import { WorkloadApiError } from '../../../src/spiffe/workload/index.js';
import { MAX_TIMER_MS } from '../../../src/time.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const DB = 'spiffe://demo.local/ns/demo/sa/db';

interface Line {
  level: number;
  event?: string;
  local_id?: string;
  reason?: string;
  rotated?: boolean;
  state?: string;
  file?: string;
}

let ca: DevCa;
beforeAll(async () => {
  ca = await DevCa.create('demo.local');
});

function make(
  opts: Partial<IdentitySourceCoreOptions> & { readiness?: () => Readiness; start?: number } = {},
): { core: IdentitySourceCore; clock: FakeClock; events: IdentityEvent[]; lines: Line[] } {
  const clock = new FakeClock(opts.start ?? Date.now());
  const lines: Line[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  const core = new IdentitySourceCore({
    kind: 'files',
    logger,
    clock,
    readiness: () => 'ready',
    closedError: () => new Error('test source ready: closed'),
    ...opts,
  });
  const events: IdentityEvent[] = [];
  core.subscribe((e) => events.push(e));
  return { core, clock, events, lines };
}

const issue = (id: string, ttlMs: number, now: number): Promise<Svid> =>
  ca.issue(id, { ttlMs, now: new Date(now) });

describe('IdentitySourceCore: held SVIDs and events', () => {
  it('emits svid-updated with previousNotAfter on replacement, and logs one line per event', async () => {
    const { core, clock, events, lines } = make();
    const a = await issue(WEB, 60_000, clock.now());
    const b = await issue(WEB, 120_000, clock.now());
    core.put(a, { file: '/x/web.crt' });
    core.put(a);
    core.put(b);
    expect(events).toEqual([
      { type: 'svid-updated', spiffeId: WEB, svid: a },
      { type: 'svid-updated', spiffeId: WEB, svid: b, previousNotAfter: a.notAfter },
    ]);
    expect(core.svid(WEB)).toBe(b);
    expect(lines.map((l) => [l.event, l.local_id, l.rotated])).toEqual([
      ['svid_updated', WEB, false],
      ['svid_updated', WEB, true],
    ]);
    expect(lines[0]!.file).toBe('/x/web.crt');

    expect(core.remove(WEB, 'gone')).toBe(true);
    expect(core.remove(WEB, 'gone')).toBe(false);
    expect(events.at(-1)).toEqual({ type: 'svid-removed', spiffeId: WEB, reason: 'gone' });
    expect(lines.at(-1)).toMatchObject({ event: 'svid_removed', local_id: WEB, reason: 'gone' });
    expect(lines).toHaveLength(3);

    core.setBundles(ca.bundles());
    core.state('disconnected', 'agent gone');
    expect(events.slice(-2)).toEqual([
      { type: 'bundles-updated', bundles: ca.bundles() },
      { type: 'source-state', state: 'disconnected', detail: 'agent gone' },
    ]);
    expect(lines.slice(-2).map((l) => [l.event, l.state])).toEqual([
      ['bundles_updated', undefined],
      ['identity_source_state', 'disconnected'],
    ]);
    expect(lines).toHaveLength(5);
  });

  it('replaceAll removes, rotates and adds, and keeps the order of the new set', async () => {
    const { core, clock, events } = make();
    const web1 = await issue(WEB, 60_000, clock.now());
    const web2 = await issue(WEB, 60_000, clock.now());
    const db = await issue(DB, 60_000, clock.now());
    const api = await issue('spiffe://demo.local/ns/demo/sa/api', 60_000, clock.now());
    core.replaceAll(
      new Map([
        [WEB, web1],
        [DB, db],
      ]),
      'unused',
    );
    core.replaceAll(
      new Map([
        [api.spiffeId, api],
        [WEB, web2],
      ]),
      'no longer issued',
    );
    expect(events.map((e) => [e.type, 'spiffeId' in e ? e.spiffeId : ''])).toEqual([
      ['svid-updated', WEB],
      ['svid-updated', DB],
      ['svid-updated', WEB],
      ['svid-removed', DB],
      ['svid-updated', api.spiffeId],
    ]);
    expect(core.ids()).toEqual([api.spiffeId, WEB]);
  });

  it('setWanted drops the SVIDs of identities no longer wanted, unless told to keep them', async () => {
    const { core, clock, events } = make();
    expect(core.setWanted([WEB, DB])).toEqual({ added: [WEB, DB], removed: [] });
    core.put(await issue(WEB, 60_000, clock.now()));
    core.put(await issue(DB, 60_000, clock.now()));
    expect(core.setWanted([DB])).toEqual({ added: [], removed: [WEB] });
    expect(events.at(-1)).toEqual({ type: 'svid-removed', spiffeId: WEB, reason: REASON_NOT_WANTED });
    expect(core.setWanted([], { keepUnwanted: true })).toEqual({ added: [], removed: [DB] });
    expect(core.svid(DB)).toBeDefined();
  });

  it('a listener that throws is logged and does not keep the others from the event', async () => {
    const { core, clock, events, lines } = make();
    core.subscribe(() => {
      throw new Error('boom');
    });
    const after: IdentityEvent[] = [];
    core.subscribe((e) => after.push(e));
    core.put(await issue(WEB, 60_000, clock.now()));
    expect(events).toHaveLength(1);
    expect(after).toHaveLength(1);
    expect(lines.some((l) => l.event === 'identity_listener_failed')).toBe(true);
  });
});

describe('IdentitySourceCore: expiry', () => {
  it('removes an SVID when it reaches notAfter, not a moment before, and tells the source', async () => {
    const expired: string[] = [];
    const { core, clock, events } = make({ onExpired: (id) => expired.push(id) });
    const svid = await issue(WEB, 10_000, clock.now());
    core.put(svid);
    const left = svid.notAfter.getTime() - clock.now();
    clock.advance(left - 1);
    expect(core.svid(WEB)).toBe(svid);
    expect(events.filter((e) => e.type === 'svid-removed')).toEqual([]);
    clock.advance(1);
    // svid() hides it from notAfter on; the timer removes it just after.
    expect(core.svid(WEB)).toBeUndefined();
    clock.advance(1);
    expect(events.at(-1)).toEqual({ type: 'svid-removed', spiffeId: WEB, reason: REASON_EXPIRED });
    expect(expired).toEqual([WEB]);
    expect(clock.pending).toBe(0);
  });

  it('re-arms for lifetimes longer than the longest timer, and a replaced SVID does not expire the new one', async () => {
    const { core, clock, events } = make();
    const long = await issue(WEB, 2 * MAX_TIMER_MS, clock.now());
    core.put(long);
    clock.advance(MAX_TIMER_MS + 10);
    expect(core.svid(WEB)).toBe(long);
    expect(clock.pending).toBe(1);
    const next = await issue(WEB, 3 * MAX_TIMER_MS, clock.now());
    core.put(next);
    expect(clock.pending).toBe(1);
    clock.advance(long.notAfter.getTime() - clock.now() + 10);
    expect(core.svid(WEB)).toBe(next);
    expect(events.filter((e) => e.type === 'svid-removed')).toEqual([]);
  });

  it('close() cancels expiry timers and stops events', async () => {
    const { core, clock, events } = make();
    core.put(await issue(WEB, 10_000, clock.now()));
    core.close();
    core.close();
    expect(clock.pending).toBe(0);
    expect(core.svid(WEB)).toBeUndefined();
    core.put(await issue(DB, 10_000, clock.now()));
    expect(events).toHaveLength(1);
  });
});

describe('IdentitySourceCore: ready latch', () => {
  it('resolves when readiness turns ready on wake(), rejects at once on an Error', async () => {
    let r: Readiness = 'pending';
    const { core } = make({ readiness: () => r });
    let settled: string | undefined;
    const p = core.ready().then(
      () => (settled = 'resolved'),
      () => (settled = 'rejected'),
    );
    core.wake();
    await Promise.resolve();
    expect(settled).toBeUndefined();
    r = 'ready';
    core.wake();
    await p;
    expect(settled).toBe('resolved');
    r = new Error('bundle missing');
    await expect(core.ready()).rejects.toThrow('bundle missing');
  });

  it('rejects with the source timeout error after readyTimeoutMs, not before', async () => {
    const { core, clock } = make({
      readiness: () => 'pending',
      readyTimeoutMs: 1_000,
      timeoutError: (ms) => new Error(`nothing within ${ms} ms`),
    });
    let err: unknown;
    const p = core.ready().catch((e: unknown) => (err = e));
    clock.advance(999);
    await Promise.resolve();
    expect(err).toBeUndefined();
    clock.advance(1);
    await p;
    expect((err as Error).message).toBe('nothing within 1000 ms');
    expect(clock.pending).toBe(0);
  });

  it('rejects pending and later ready() calls once closed', async () => {
    const { core, clock } = make({ readiness: () => 'pending' });
    const p = core.ready();
    core.close();
    await expect(p).rejects.toThrow('test source ready: closed');
    await expect(core.ready()).rejects.toThrow('test source ready: closed');
    expect(clock.pending).toBe(0);
  });
});

describe('IdentitySourceCore: upstream', () => {
  it('reports only changes of the upstream state, and denied as no-identity', () => {
    const { core, events } = make();
    const err = new WorkloadApiError('connection refused');
    expect(core.followStream('bundles', { state: 'connected' }, 'SPIRE agent at unix:///a')).toBe(true);
    expect(core.followStream('svids', { state: 'connected' }, 'SPIRE agent at unix:///a')).toBe(true);
    expect(core.followStream('svids', { state: 'unavailable', error: err, retryInMs: 10 }, 'x')).toBe(true);
    expect(core.followStream('bundles', { state: 'unavailable', error: err, retryInMs: 10 }, 'x')).toBe(true);
    expect(core.lastError).toBe('connection refused');
    const denied = new WorkloadApiError('not a delegate');
    expect(
      core.followStream('svids', { state: 'permission-denied', error: denied, retryInMs: 10 }, 'x'),
    ).toBe(false);
    expect(core.followStream('svids', { state: 'failed', error: err }, 'x')).toBe(false);
    core.upstream('denied', 'refused');
    core.upstream('denied', 'refused');
    expect(events).toEqual([
      { type: 'source-state', state: 'connected', detail: 'SPIRE agent at unix:///a' },
      { type: 'source-state', state: 'disconnected', detail: 'connection refused' },
      { type: 'source-state', state: 'no-identity', detail: 'refused' },
    ]);
  });

  it('installs streamed bundles unless none is usable, logging each rejected entry', () => {
    const { core, events, lines } = make();
    const rejected = [
      { reason: 'empty-bundle' as const, subject: 'spiffe://other.local', message: 'no authorities' },
    ];
    expect(core.acceptBundleUpdate({ bundles: new Map(), rejected }, 'SPIRE agent')).toBe(false);
    expect(events).toEqual([]);
    expect(lines.map((l) => [l.event, l.reason])).toEqual([
      ['bundle_rejected', 'empty-bundle'],
      ['bundle_rejected', 'empty-bundle-set'],
    ]);
    expect(core.acceptBundleUpdate({ bundles: ca.bundles(), rejected: [] }, 'SPIRE agent')).toBe(true);
    expect(core.bundles()).toEqual(ca.bundles());
    expect(events).toEqual([{ type: 'bundles-updated', bundles: ca.bundles() }]);
  });
});
