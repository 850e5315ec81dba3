import { createHmac } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  channelMessage,
  nodeSpiffeIdFor,
  parseChannelMessage,
  ProofExchange,
  REFUSAL_HOLD_MS,
  type ChannelMessage,
  type ProofChannel,
} from '../../../../src/auth/channel/index.js';
import { ResponderAuditPacer } from '../../../../src/auth/audit-pacing.js';
import type { ServerAuthenticated } from '../../../../src/auth/manager.js';
import type { Svid, TrustBundles } from '../../../../src/spiffe/index.js';
import { FakeClock } from '../../../helpers/fake-clock.js';
import { newPki, type TestPki } from '../../../integration/handshake/pki.js';

const TD = 'demo.local';
const WEB = `spiffe://${TD}/ns/a/sa/web`;
const DB = `spiffe://${TD}/ns/b/sa/db`;

/** Both ends of one in-memory channel: frames go through JSON and the schema, delivered by pump(). */
class FakeLink {
  readonly queue: Array<{ to: 'a' | 'b'; value: unknown }> = [];
  readonly ends: Record<'a' | 'b', ProofExchange | undefined> = { a: undefined, b: undefined };
  /** Frames each end sent, as parsed. */
  readonly sent: Record<'a' | 'b', ChannelMessage[]> = { a: [], b: [] };
  constructor(readonly secret: string) {}
  channel(side: 'a' | 'b'): ProofChannel {
    const to = side === 'a' ? 'b' : 'a';
    return {
      id: 'fake',
      role: side === 'a' ? 'client' : 'server',
      peerNode: side === 'a' ? 'node-b' : 'node-a',
      tlsVersion: 'TLSv1.3',
      cipher: 'TLS_AES_128_GCM_SHA256',
      hash: 'sha256',
      exportKeyingMaterial: (length, label) =>
        createHmac('sha512', this.secret).update(label).digest().subarray(0, length),
      send: (body) => {
        const m = JSON.parse(JSON.stringify(channelMessage(body))) as unknown;
        this.sent[side].push(parseChannelMessage(m));
        this.queue.push({ to, value: m });
        return true;
      },
    };
  }
  /** Deliver everything queued (and what that causes). */
  pump(): void {
    for (let n = 0; this.queue.length > 0; n++) {
      if (n > 10_000) throw new Error('fake link: message loop');
      const { to, value } = this.queue.shift()!;
      this.ends[to]!.handle(parseChannelMessage(value));
    }
  }
}

class Ids {
  readonly svids = new Map<string, Svid>();
  constructor(public trust: TrustBundles) {}
  svid(id: string): Svid | undefined {
    return this.svids.get(id);
  }
  bundles(): TrustBundles {
    return this.trust;
  }
}

let pki: TestPki;
let web: Svid;
let db: Svid;
beforeAll(async () => {
  pki = await newPki(TD);
  [web, db] = await Promise.all([pki.issue(WEB), pki.issue(DB)]);
});

function setUp(opts: { aHolds?: Svid[]; bPlacesOnA?: string[]; bAuditPacer?: ResponderAuditPacer } = {}) {
  const clock = new FakeClock();
  const link = new FakeLink('k');
  const ids = { a: new Ids(pki.bundles), b: new Ids(pki.bundles) };
  for (const s of opts.aHolds ?? [web]) ids.a.svids.set(s.spiffeId, s);
  ids.b.svids.set(DB, db);
  const placed = { a: [DB], b: opts.bPlacesOnA ?? [WEB] };
  const written: Record<'a' | 'b', ServerAuthenticated[]> = { a: [], b: [] };
  const events: Record<'a' | 'b', string[]> = { a: [], b: [] };
  const changes = { a: 0, b: 0 };
  for (const side of ['a', 'b'] as const) {
    link.ends[side] = new ProofExchange({
      channel: link.channel(side),
      identity: ids[side],
      isWorkloadOnNode: (id, node) =>
        node === (side === 'a' ? 'node-b' : 'node-a') && placed[side].includes(id),
      clock,
      maxEntryTtlMs: 600_000,
      requestPool: 4,
      onPairRequested: (r) => written[side].push(r),
      ...(side === 'b' && opts.bAuditPacer ? { auditPacer: opts.bAuditPacer, pairBudgetMs: 3000 } : {}),
      onEvent: (e) => events[side].push(e.reason),
      onChange: () => changes[side]++,
    });
  }
  return { clock, link, ids, placed, written, events, changes, a: link.ends.a!, b: link.ends.b! };
}

describe('ProofExchange (fake channel)', () => {
  it('proves each side once and makes a pair ready only when both proofs are accepted', () => {
    const t = setUp();
    t.a.start([WEB]);
    t.b.start([DB]);
    expect(t.a.pairReady(WEB, DB)).toMatchObject({ ok: false, final: false, reason: 'proof-missing' });
    t.link.pump();
    const ready = t.a.pairReady(WEB, DB);
    expect(ready.ok).toBe(true);
    if (!ready.ok) return;
    expect(ready.use.localProof).toEqual({ spiffeId: WEB, serial: web.leaf.serialNumber });
    expect(ready.use.expiresAtMs).toBeLessThanOrEqual(
      Math.min(web.notAfter.getTime(), db.notAfter.getTime()),
    );
    expect(ready.use.trust.chains.map((c) => c.trustDomain)).toEqual([TD, TD]);
    // One authenticator each way, and each used request replaced.
    expect(t.link.sent.a.filter((m) => m.t === 'auth')).toHaveLength(1);
    expect(t.link.sent.b.filter((m) => m.t === 'auth')).toHaveLength(1);
    expect(
      t.link.sent.b.filter((m) => m.t === 'req').map((m) => (m.t === 'req' ? m.reqs.length : 0)),
    ).toEqual([4, 1]);
  });

  it('reports a proof exchange in flight until every proof sent and asked for is settled', () => {
    const t = setUp();
    t.a.start([]);
    t.b.start([]);
    expect(t.a.inFlight()).toBe(false);
    // Our proof queued/sent and the peer's asked for: in flight until both verdicts are in.
    t.a.request(WEB, DB);
    expect(t.a.inFlight()).toBe(true);
    t.link.pump();
    expect(t.a.pairReady(WEB, DB)).toMatchObject({ ok: true });
    expect(t.a.inFlight()).toBe(false);
    expect(t.b.inFlight()).toBe(false);
    // An identity the peer does not hold settles as unavailable: no longer in flight.
    t.a.request(WEB, `spiffe://${TD}/ns/b/sa/gone`);
    expect(t.a.inFlight()).toBe(true);
    t.link.pump();
    expect(t.a.inFlight()).toBe(false);
  });

  it('writes the reverse entry for a pair message only from its own proofs, and acknowledges it', async () => {
    const t = setUp();
    t.a.start([WEB]);
    t.b.start([DB]);
    t.link.pump();
    const seq = t.a.sendPair(WEB, DB);
    const acked = t.a.peerWrote(seq);
    t.link.pump();
    expect(t.written.b).toHaveLength(1);
    expect(t.written.b[0]).toMatchObject({ localId: DB, remoteId: WEB, peerNode: 'node-a' });
    expect(t.written.b[0]!.channel).toMatchObject({ id: 'fake', pairSeq: 1 });
    // Written: acknowledged with ok, so that node-a knows both entries exist.
    expect(t.link.sent.b.find((m) => m.t === 'pair-result')).toMatchObject({ seq: 1, ok: true });
    await expect(acked).resolves.toBe(true);
    // A pair naming an identity node-a never proved: refused, answered, nothing written.
    const refusedAck = t.a.peerWrote(7);
    t.link.channel('a').send({ t: 'pair', seq: 7, from: `spiffe://${TD}/ns/a/sa/api`, to: DB });
    t.link.pump();
    expect(t.written.b).toHaveLength(1);
    expect(t.events.b).toContain('proof-missing');
    await expect(refusedAck).resolves.toBe(false);
    expect(t.link.sent.b.find((m) => m.t === 'pair-result' && m.seq === 7)).toMatchObject({
      seq: 7,
      ok: false,
      reason: 'proof-missing',
    });
  });

  it("paces a pair message by the responder's audit queue: waits, writes once drained, refuses audit-busy in time", async () => {
    const queue = { depth: 0 };
    const clock = new FakeClock();
    const pacer = new ResponderAuditPacer({
      backpressure: { depth: () => queue.depth, highWater: 8, lowWater: 5, pollMs: 10 },
      clock,
    });
    const t = setUp({ bAuditPacer: pacer });
    t.a.start([WEB]);
    t.b.start([DB]);
    t.link.pump();
    const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
    // Held above high-water: no entry, no answer yet.
    queue.depth = 9;
    const first = t.a.peerWrote(t.a.sendPair(WEB, DB));
    t.link.pump();
    expect(t.written.b).toEqual([]);
    expect(t.link.sent.b.filter((m) => m.t === 'pair-result')).toEqual([]);
    expect(pacer.stats().waiting).toBe(1);
    // Drained (the pacer's clock): written and acknowledged.
    queue.depth = 5;
    clock.advance(10);
    await settle();
    t.link.pump();
    expect(t.written.b).toHaveLength(1);
    await expect(first).resolves.toBe(true);
    // Above high-water for longer than the pair's budget: refused, nothing written, the initiator told.
    queue.depth = 50;
    const second = t.a.peerWrote(t.a.sendPair(WEB, DB));
    t.link.pump();
    clock.advance(3000);
    await settle();
    t.link.pump();
    expect(t.written.b).toHaveLength(1);
    await expect(second).resolves.toBe(false);
    expect(t.link.sent.b.filter((m) => m.t === 'pair-result').at(-1)).toMatchObject({
      ok: false,
      reason: 'audit-busy',
    });
    expect(t.events.b).toContain('audit-busy');
    expect(t.events.a).toContain('audit-busy');
    expect(pacer.stats()).toMatchObject({ paced: 1, refused: 1 });
    // A pair its proofs do not support takes no place in the wait: refused at once.
    t.link.channel('a').send({ t: 'pair', seq: 50, from: `spiffe://${TD}/ns/a/sa/api`, to: DB });
    t.link.pump();
    expect(pacer.stats().waiting).toBe(0);
    expect(t.link.sent.b.filter((m) => m.t === 'pair-result').at(-1)).toMatchObject({
      seq: 50,
      ok: false,
      reason: 'proof-missing',
    });
    expect(t.written.b).toHaveLength(1);
    pacer.close();
  });

  it('a channel that closes ends its pairs’ waits for the audit queue: no place held, nothing written, no refusal counted', async () => {
    const queue = { depth: 0 };
    const clock = new FakeClock();
    const pacer = new ResponderAuditPacer({
      backpressure: { depth: () => queue.depth, highWater: 8, lowWater: 5, pollMs: 10 },
      clock,
      maxWaiting: 2,
    });
    const t = setUp({ bAuditPacer: pacer });
    t.a.start([WEB]);
    t.b.start([DB]);
    t.link.pump();
    const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
    queue.depth = 9;
    // A peer fills the wait with pair messages, then its channel closes.
    t.a.sendPair(WEB, DB);
    t.a.sendPair(WEB, DB);
    t.link.pump();
    expect(pacer.stats().waiting).toBe(2);
    t.b.close();
    t.b.close();
    await settle();
    // The places are free at once (not after the 3 s budget), and the pairs were not refused for
    // the audit queue (nobody is there to retry them): they ended with their channel.
    expect(pacer.stats()).toMatchObject({ waiting: 0, refused: 0, paced: 0 });
    expect(t.events.b.filter((r) => r === 'aborted')).toHaveLength(2);
    // A pair message that arrives after the close takes no place either.
    t.a.sendPair(WEB, DB);
    t.link.pump();
    expect(pacer.stats().waiting).toBe(0);
    expect(t.events.b.at(-1)).toBe('channel-closed');
    // Drained later: nothing is written for any of them.
    queue.depth = 0;
    clock.advance(3000);
    await settle();
    t.link.pump();
    expect(t.written.b).toEqual([]);
    expect(t.link.sent.b.filter((m) => m.t === 'pair-result' && m.ok)).toEqual([]);
    pacer.close();
  });

  it('refuses a workload the inventory does not place on the peer node, and reports it to the prover', () => {
    const t = setUp({ bPlacesOnA: [] });
    t.a.start([WEB]);
    t.b.start([DB]);
    t.link.pump();
    expect(t.events.b).toContain('workload-not-on-node');
    expect(t.a.pairReady(WEB, DB)).toMatchObject({ ok: false, final: true, reason: 'peer-rejected' });
    // The refusal holds for REFUSAL_HOLD_MS; then the proof is sent again (the inventory may have
    // caught up) and accepted.
    t.placed.b.push(WEB);
    t.clock.advance(REFUSAL_HOLD_MS);
    expect(t.a.pairReady(WEB, DB)).toMatchObject({ ok: false, final: false });
    t.a.request(WEB, DB);
    t.link.pump();
    expect(t.a.pairReady(WEB, DB)).toMatchObject({ ok: true });
    expect(t.link.sent.a.filter((m) => m.t === 'auth')).toHaveLength(2);
  });

  it('drops a proof when its SVID is withdrawn, and a proof expires with its certificates', async () => {
    const t = setUp();
    t.a.start([WEB]);
    t.b.start([DB]);
    t.link.pump();
    expect(t.b.remoteProof(WEB)).toBeDefined();
    t.ids.a.svids.delete(WEB);
    t.a.localSvidChanged(WEB);
    t.link.pump();
    expect(t.b.remoteProof(WEB)).toBeUndefined();
    // Expiry: a short-lived SVID's proof is gone once the clock passes its notAfter.
    const short = await pki.issue(WEB, { ttlMs: 120_000 });
    t.ids.a.svids.set(WEB, short);
    t.a.request(WEB, DB);
    t.link.pump();
    expect(t.b.remoteProof(WEB)?.expiresAtMs).toBe(short.notAfter.getTime());
    t.clock.advance(short.notAfter.getTime() - t.clock.now() + 1);
    expect(t.b.remoteProof(WEB)).toBeUndefined();
  });

  it('refuses an authenticator that answers no outstanding request (replayed within the channel)', () => {
    const t = setUp();
    t.a.start([WEB]);
    t.b.start([DB]);
    t.link.pump();
    const auth = t.link.sent.a.find((m) => m.t === 'auth')!;
    t.link.channel('a').send(auth as never);
    t.link.pump();
    expect(t.events.b).toContain('proof-unrequested');
  });

  it('answers a want for an identity it does not hold as unavailable (final for the asker)', () => {
    const t = setUp();
    t.a.start([WEB]);
    t.b.start([]);
    t.a.request(WEB, `spiffe://${TD}/ns/b/sa/nobody`);
    t.link.pump();
    expect(t.a.pairReady(WEB, `spiffe://${TD}/ns/b/sa/nobody`)).toMatchObject({
      ok: false,
      final: true,
      reason: 'remote-identity-unavailable',
    });
    // Once the workload runs there and holds its SVID, asking again after the hold finds it.
    const nobody = `spiffe://${TD}/ns/b/sa/nobody`;
    t.clock.advance(REFUSAL_HOLD_MS);
    expect(t.a.pairReady(WEB, nobody)).toMatchObject({ ok: false, final: false });
    const wants = t.link.sent.a.filter((m) => m.t === 'want').length;
    t.a.request(WEB, nobody);
    expect(t.link.sent.a.filter((m) => m.t === 'want')).toHaveLength(wants + 1);
  });
});

describe('node SPIFFE IDs', () => {
  it('fills the node name into the template and refuses a template without {node}', () => {
    expect(nodeSpiffeIdFor('spiffe://td/meshauth/node/{node}')('node-a')).toBe(
      'spiffe://td/meshauth/node/node-a',
    );
    expect(() => nodeSpiffeIdFor('spiffe://td/meshauth/node')).toThrow(RangeError);
    expect(() => nodeSpiffeIdFor('https://td/{node}')).toThrow(RangeError);
  });
});

describe('channel messages', () => {
  it('accepts the versioned schema and refuses other versions, unknown types and extra fields', () => {
    expect(parseChannelMessage({ v: 1, t: 'ping', seq: 3 })).toEqual({ v: 1, t: 'ping', seq: 3 });
    for (const bad of [
      { v: 2, t: 'ping', seq: 3 },
      { v: 1, t: 'shout' },
      { v: 1, t: 'ping', seq: 3, extra: true },
      { v: 1, t: 'auth', id: 'not-a-spiffe-id', a: 'AAAA' },
      { v: 1, t: 'req', reqs: [] },
      'hello',
      null,
    ]) {
      expect(() => parseChannelMessage(bad)).toThrow(
        expect.objectContaining({ reason: 'protocol-error' }) as Error,
      );
    }
  });
});
