import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  connect as tcpConnect,
  createServer as createTcpServer,
  type AddressInfo,
  type Server,
  type Socket,
} from 'node:net';
import {
  createAuthenticator,
  encodeRequest,
  REFUSAL_HOLD_MS,
  type ChannelEviction,
  verifyAuthenticator,
  type ChannelMessage,
} from '../../../../src/auth/channel/index.js';
import { MemoryAuditSink } from '../../../../src/audit/sink.js';
import { ResponderAuditPacer } from '../../../../src/auth/audit-pacing.js';
import { HandshakeError } from '../../../../src/auth/handshake/errors.js';
import type { HandshakeFailureEvent } from '../../../../src/auth/handshake/types.js';
import { AuthReporter } from '../../../../src/auth/reporter.js';
import { silentLogger } from '../../../../src/log.js';
import { encodeFrame } from '../../../../src/auth/handshake/frame.js';
import type { Svid } from '../../../../src/spiffe/index.js';
import { generatePrivateKey, wireguardKeyAgreement } from '../../../../src/wireguard/keys.js';
import { FakeClock } from '../../../helpers/fake-clock.js';
import { newPki, type TestPki } from '../../handshake/pki.js';
import { Cluster, Identities, nodeId, TD, until, type TestNode } from './harness.js';

const WEB = `spiffe://${TD}/ns/a/sa/web`;
const API = `spiffe://${TD}/ns/a/sa/api`;
const DB = `spiffe://${TD}/ns/b/sa/db`;
const OTHER = `spiffe://${TD}/ns/b/sa/other`;
const wgA = wireguardKeyAgreement(generatePrivateKey());
const wgB = wireguardKeyAgreement(generatePrivateKey());
const wgX = wireguardKeyAgreement(generatePrivateKey());

let pki: TestPki;
let rogue: TestPki;
let nodeA: Svid;
let nodeB: Svid;
let web: Svid;
let api: Svid;
let db: Svid;

beforeAll(async () => {
  pki = await newPki(TD);
  rogue = await newPki(TD);
  [nodeA, nodeB, web, api, db] = await Promise.all([
    pki.issue(nodeId('node-a')),
    pki.issue(nodeId('node-b')),
    pki.issue(WEB),
    pki.issue(API),
    pki.issue(DB),
  ]);
});

let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

async function pair(
  opts: {
    aWorkloads?: string[];
    bWorkloads?: string[];
    a?: Partial<Parameters<Cluster['node']>[0]>;
    b?: Partial<Parameters<Cluster['node']>[0]>;
  } = {},
): Promise<{ a: TestNode; b: TestNode }> {
  cluster = new Cluster();
  const a = await cluster.node({
    name: 'node-a',
    peer: 'node-b',
    nodeSvid: nodeA,
    identity: new Identities(pki.bundles).add(web).add(api),
    peerWorkloads: opts.bWorkloads ?? [DB, OTHER],
    wireguard: wgA,
    peerWireguardKey: wgB.publicKey,
    ...opts.a,
  });
  const b = await cluster.node({
    name: 'node-b',
    peer: 'node-a',
    nodeSvid: nodeB,
    identity: new Identities(pki.bundles).add(db),
    peerWorkloads: opts.aWorkloads ?? [WEB, API],
    wireguard: wgB,
    peerWireguardKey: wgA.publicKey,
    ...opts.b,
  });
  return { a, b };
}

async function failure(p: Promise<unknown>): Promise<HandshakeError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(HandshakeError);
    return err as HandshakeError;
  }
  throw new Error('expected a failure');
}

/** Messages node `n` receives on its channel to `peer` from now on. */
function tap(n: TestNode, peer: string): ChannelMessage[] {
  const proofs = n.channels.proofs(peer)!;
  const seen: ChannelMessage[] = [];
  const handle = proofs.handle.bind(proofs);
  proofs.handle = (m) => {
    seen.push(m);
    handle(m);
  };
  return seen;
}

function audited(n: TestNode, reason: string): boolean {
  return n.audit.events.some((e) => e.type === 'handshake-failed' && e.reason === reason);
}

describe('node channel over loopback TLS', () => {
  it('proves both identities once, then authenticates pairs with one message and no signature', async () => {
    const { a, b } = await pair();
    const r = await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '127.0.0.1',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    expect(r.channel?.peerNode).toBe('node-b');
    expect(r.channel?.localProof).toEqual({ spiffeId: WEB, serial: web.leaf.serialNumber });
    expect(r.channel?.remoteProof.spiffeId).toBe(DB);
    expect(r.peerSerials?.[0]).toBe(db.leaf.serialNumber);
    expect(r.expiresAtMs).toBeLessThanOrEqual(Math.min(web.notAfter.getTime(), db.notAfter.getTime()));
    expect(r.trust?.chains).toHaveLength(2);
    expect(r.tlsVersion).toBe('TLSv1.3');
    await until(() => b.written.length === 1, 3000, 'reverse entry');
    expect(b.written[0]).toMatchObject({ localId: DB, remoteId: WEB, peerNode: 'node-a' });
    expect(b.written[0]!.channel?.id).toBe(r.channel?.id);

    const pa = a.channels.proofs('node-b')!;
    const pb = b.channels.proofs('node-a')!;
    const signed = pa.counters.signed + pb.counters.signed;
    const verified = pa.counters.verified + pb.counters.verified;
    // A second pair with a proved identity: no new authenticator, no new verification.
    const r2 = await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    expect(r2.channel?.pairSeq).toBe(2);
    await until(() => b.written.length === 2, 3000, 'second reverse entry');
    expect(pa.counters.signed + pb.counters.signed).toBe(signed);
    expect(pa.counters.verified + pb.counters.verified).toBe(verified);
    expect(a.channels.counters.opened + b.channels.counters.opened).toBe(2);
  });

  it('uses one channel when both nodes dial at once (the lower node name wins)', async () => {
    const { a, b } = await pair();
    const [ca, cb] = await Promise.all([
      a.channels.ensureChannel('node-b'),
      b.channels.ensureChannel('node-a'),
    ]);
    await until(
      () => a.channels.channel('node-b')?.id === b.channels.channel('node-a')?.id,
      3000,
      'both sides on one channel',
    );
    const kept = a.channels.channel('node-b')!;
    expect(kept.role).toBe('client'); // dialled by node-a, the lower name
    expect([ca.id, cb.id]).toBeDefined();
    const r = await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: API,
      remoteId: DB,
    });
    expect(r.channel?.id).toBe(kept.id);
  });

  it('refuses an authenticator for an identity the peer node does not run, and one whose chain names another ID', async () => {
    // node-b's inventory does not place API on node-a.
    const { a, b } = await pair({ aWorkloads: [WEB] });
    const e = await failure(
      a.channels.authenticate({
        peerNode: 'node-b',
        peerAddress: '',
        peerPort: 0,
        localId: API,
        remoteId: DB,
      }),
    );
    expect(e.reason).toBe('peer-rejected');
    expect(e.message).toContain('workload-not-on-node');
    expect(audited(b, 'workload-not-on-node')).toBe(true);
    expect(b.written).toHaveLength(0);

    // node-a claims WEB with the API SVID: the chain's SPIFFE ID decides.
    a.identity.svids.set(WEB, api);
    const e2 = await failure(
      a.channels.authenticate({
        peerNode: 'node-b',
        peerAddress: '',
        peerPort: 0,
        localId: WEB,
        remoteId: DB,
      }),
    );
    expect(e2.message).toContain('spiffe-id-mismatch');
    expect(audited(b, 'spiffe-id-mismatch')).toBe(true);
    // The channel survives refused proofs.
    expect(a.channels.channel('node-b')?.closed).toBe(false);
  });

  it('rejects an authenticator replayed on another channel', async () => {
    const { a, b } = await pair();
    await a.channels.ensureChannel('node-b');
    await until(() => !!b.channels.proofs('node-a'), 3000, 'node-b side up');
    const seen = tap(b, 'node-a');
    await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    const auth = seen.find((m) => m.t === 'auth')!;
    expect(auth).toBeDefined();
    const first = a.channels.channel('node-b')!;
    first.close('test');
    await until(
      () => !!a.channels.channel('node-b') && a.channels.channel('node-b') !== first,
      3000,
      'reconnected',
    );
    const second = a.channels.channel('node-b')!;
    await until(() => b.channels.channel('node-a')?.id === second.id, 3000, 'node-b adopted it');
    const before = b.audit.events.length;
    second.socket.write(encodeFrame(auth));
    await until(
      () => audited(b, 'proof-unrequested') && b.audit.events.length > before,
      3000,
      'replay refused',
    );
    expect(b.channels.proofs('node-a')!.remoteProof(WEB)).toBeUndefined();
    expect(second.closed).toBe(false);

    // Even answering a request of the new channel, an authenticator made over the old one does
    // not verify: its transcript starts from the old connection's exported keys.
    const req = encodeRequest('server', randomBytes(16));
    const old = createAuthenticator({
      conn: first,
      creator: 'client',
      request: req,
      chainDer: web.chainDer,
      key: web.key,
    });
    const onB = b.channels.channel('node-a')!;
    expect(() => verifyAuthenticator(onB, 'client', req, old)).toThrow(
      expect.objectContaining({ reason: 'proof-signature-invalid' }) as Error,
    );
    const fresh = createAuthenticator({
      conn: second,
      creator: 'client',
      request: req,
      chainDer: web.chainDer,
      key: web.key,
    });
    expect(verifyAuthenticator(onB, 'client', req, fresh).leaf.serialNumber).toBe(web.leaf.serialNumber);
  });

  it('refuses malformed, out-of-order and unknown-version messages and survives them; closes on an oversized frame', async () => {
    const { a, b } = await pair();
    const ch = await a.channels.ensureChannel('node-b');
    await until(() => !!b.channels.proofs('node-a'), 3000, 'node-b side up');
    ch.socket.write(encodeFrame({ v: 1, t: 'auth', id: WEB, a: 'AAAA' }));
    ch.socket.write(encodeFrame({ v: 1, t: 'hello', node: 'node-a', peerNode: 'node-b' }));
    ch.socket.write(encodeFrame({ v: 9, t: 'ping', seq: 1 }));
    ch.socket.write(encodeFrame({ v: 1, t: 'pair', seq: 1, from: WEB, to: DB }));
    await until(() => audited(b, 'proof-malformed'), 3000, 'malformed authenticator refused');
    await until(() => audited(b, 'proof-missing'), 3000, 'pair without proofs refused');
    expect(b.audit.events.filter((e) => e.reason === 'protocol-error').length).toBeGreaterThanOrEqual(2);
    expect(b.written).toHaveLength(0); // no entry without the proofs
    // Still usable.
    const r = await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    expect(r.channel?.id).toBe(ch.id);

    const header = Buffer.alloc(4);
    header.writeUInt32BE(1 << 20, 0);
    ch.socket.write(header);
    await until(() => ch.closed, 3000, 'channel closed on an oversized frame');
    expect(audited(b, 'protocol-error')).toBe(true);
  });

  it('refuses a pair message whose proofs it does not hold, and one the write check refuses', async () => {
    const { a, b } = await pair();
    await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    await until(() => b.written.length === 1, 3000, 'first entry');
    const ch = a.channels.channel('node-b')!;
    // API never proved itself on this channel.
    ch.send({ t: 'pair', seq: 99, from: API, to: DB });
    await until(() => audited(b, 'proof-missing'), 3000, 'refused');
    b.refuseWrite = 'not-required-by-policy';
    ch.send({ t: 'pair', seq: 100, from: WEB, to: DB });
    await until(() => audited(b, 'not-required-by-policy'), 3000, 'write check refused');
    expect(b.written).toHaveLength(1);
  });

  it('a peer that floods pair messages nothing supports gets a bounded number of refusal records, the rest counted in one', async () => {
    const { a, b } = await pair();
    await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    await until(() => b.written.length === 1, 3000, 'first entry');
    const proofs = b.channels.proofs('node-a')!;
    const before = proofs.counters.pairsRefused;
    const ch = a.channels.channel('node-b')!;
    // API never proved itself on this channel: every one of these is refused (proof-missing).
    const flood = 2000;
    for (let seq = 1000; seq < 1000 + flood; seq++) ch.send({ t: 'pair', seq, from: API, to: DB });
    await until(() => proofs.counters.pairsRefused - before === flood, 10_000, 'every pair message refused');
    const own = b.audit.events.filter((e) => e.reason === 'proof-missing');
    expect(own.length).toBeGreaterThan(0);
    expect(own.length).toBeLessThanOrEqual(64);
    expect(b.written).toHaveLength(1);
    // Shutdown writes the window's summary: every refusal is in a record, its own or the summary.
    await b.channels.close();
    const summary = b.audit.events.filter(
      (e) => e.reason === 'rate-limited' && (e.details as { stage?: string }).stage === 'channel-summary',
    );
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({ type: 'handshake-failed', node: 'node-a' });
    const d = summary[0]!.details as { count: number; byReason: Record<string, number> };
    expect(d.count + own.length).toBe(flood);
    expect(d.byReason).toEqual({ 'proof-missing': d.count });
  });

  it("paces pair messages by the responder's audit queue: waits, refuses audit-busy with nothing written, writes once drained", async () => {
    // Node-b's audit queue as its pacer sees it, and the pacer's clock (the channels run on real time).
    const queue = { depth: 100 };
    const pacerClock = new FakeClock();
    const pacerAudit = new MemoryAuditSink();
    const pacer = new ResponderAuditPacer({
      backpressure: { depth: () => queue.depth, highWater: 80, lowWater: 50, pollMs: 20 },
      clock: pacerClock,
      audit: pacerAudit,
    });
    const { a, b } = await pair({ b: { overrides: { auditPacer: pacer } } });
    const req = { peerNode: 'node-b', peerAddress: '', peerPort: 0, localId: WEB, remoteId: DB };

    // Held: node-a has its entry (it earned it); node-b writes nothing while its queue is high.
    const r1 = await a.channels.authenticate(req);
    await until(() => pacer.stats().waiting === 1, 5000, 'the pair to wait for the audit queue');
    expect(b.written).toEqual([]);
    queue.depth = 50;
    pacerClock.advance(20);
    await until(() => b.written.length === 1, 5000, 'the reverse entry once drained');
    await expect(r1.peerEntryWritten).resolves.toBe(true);

    // Not drained within the pair's budget (timeoutMs 3000): refused, nothing written, node-a told.
    queue.depth = 100;
    const r2 = await a.channels.authenticate(req);
    await until(() => pacer.stats().waiting === 1, 5000, 'the second pair to wait');
    pacerClock.advance(3000);
    await expect(r2.peerEntryWritten).resolves.toBe(false);
    expect(b.written).toHaveLength(1);
    await until(() => audited(a, 'audit-busy'), 5000, "node-a to record node-b's refusal");
    // Node-b records no refusal of its own while its queue is over the mark...
    expect(audited(b, 'audit-busy')).toBe(false);
    expect(pacerAudit.events).toEqual([]);
    expect(pacer.stats()).toMatchObject({ paced: 1, refused: 1, paused: 1 });

    // ...and once it drains, authenticates again; the episode's refusals go into the pacer's record.
    queue.depth = 10;
    pacerClock.advance(20);
    const r3 = await a.channels.authenticate(req);
    await expect(r3.peerEntryWritten).resolves.toBe(true);
    expect(b.written).toHaveLength(2);
    expect(pacer.stats()).toMatchObject({ paced: 1, refused: 1, paused: 0 });
    expect(pacerAudit.events).toHaveLength(1);
    expect(pacerAudit.events[0]).toMatchObject({
      type: 'handshake-failed',
      reason: 'audit-busy',
      details: {
        refused: 1,
        // The first pair was paced in an earlier episode (which refused nothing: no record).
        paced: 0,
        byNode: { 'node-a': 1 },
        pairs: [{ path: 'channel', node: 'node-a', localId: DB, remoteId: WEB }],
      },
    });
    pacer.close();
  });

  it('proves a renewed SVID again, and drops proofs and channels whose authority left the bundle', async () => {
    const { a, b } = await pair();
    await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    const renewed = await pki.issue(WEB);
    a.identity.add(renewed);
    a.channels.onLocalSvidChanged(WEB);
    const r = await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    expect(r.channel?.localProof.serial).toBe(renewed.leaf.serialNumber);
    await until(() => b.written.length === 2, 3000, 'entry from the renewed proof');
    expect(b.written[1]!.peerSerials?.[0]).toBe(renewed.leaf.serialNumber);

    // Revocation: node-b's bundle now holds only another authority.
    const ch = b.channels.channel('node-a')!;
    b.identity.trust = rogue.bundles;
    b.channels.onTrustBundlesChanged(rogue.bundles);
    expect(ch.closed).toBe(true);
    expect(ch.closeReason).toBe('bundle-revoked');
  });

  it("refuses a peer whose WireGuard key is not the inventory's, and one that cannot prove its key", async () => {
    const { a } = await pair({ b: { peerWireguardKey: wgX.publicKey } });
    const e = await failure(a.channels.ensureChannel('node-b'));
    // node-b's proof is computed for the key it expects node-a to have: node-a sees no valid proof.
    expect(e.reason).toBe('wireguard-key-proof-invalid');
    const b = cluster.nodes[1]!;
    await until(() => audited(b, 'wireguard-key-mismatch'), 3000, 'mismatch audited');
    expect(b.channels.channel('node-a')).toBeUndefined();
    await cluster.close();

    // node-a publishes node-b's expected key but holds another private key.
    const { b: b2 } = await pair({ b: {} });
    cluster.nodes[0]!.channels['check'].wireguard = {
      publicKey: wgA.publicKey,
      sharedSecret: (k) => wgX.sharedSecret(k),
    };
    await failure(cluster.nodes[0]!.channels.ensureChannel('node-b'));
    await until(() => audited(b2, 'wireguard-key-proof-invalid'), 3000, 'proof refusal audited');
  });

  it("refuses a node SVID that is not the claimed node's, or not from the trust bundle", async () => {
    cluster = new Cluster();
    // node-a presents a workload SVID as its node SVID.
    const a = await cluster.node({
      name: 'node-a',
      peer: 'node-b',
      nodeSvid: web,
      identity: new Identities(pki.bundles).add(web),
      peerWorkloads: [DB],
    });
    const b = await cluster.node({
      name: 'node-b',
      peer: 'node-a',
      nodeSvid: nodeB,
      identity: new Identities(pki.bundles).add(db),
      peerWorkloads: [WEB],
    });
    await failure(a.channels.ensureChannel('node-b'));
    await until(() => audited(b, 'spiffe-id-mismatch'), 3000, 'node id mismatch audited');
    const impostor = await rogue.issue(nodeId('node-a'));
    (a.channels as unknown as { opts: { nodeSvid: () => Svid } }).opts.nodeSvid = () => impostor;
    await failure(a.channels.ensureChannel('node-b'));
    await until(() => audited(b, 'svid-untrusted'), 3000, 'untrusted node SVID audited');
    expect(b.written).toHaveLength(0);
  });

  it('falls back to the per-pair authenticator when the peer does not speak the channel', async () => {
    cluster = new Cluster();
    const calls: string[] = [];
    const a = await cluster.node({
      name: 'node-a',
      peer: 'node-b',
      nodeSvid: nodeA,
      identity: new Identities(pki.bundles).add(web),
      peerWorkloads: [DB],
      fallback: {
        authenticate: (req) => {
          calls.push(`${req.localId}>${req.remoteId}`);
          return Promise.resolve({ expiresAtMs: Date.now() + 60_000, durationMs: 1 });
        },
      },
    });
    // node-b listens for nothing: take a free port and close it.
    const { createServer } = await import('node:net');
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as { port: number }).port;
    await new Promise<void>((r) => s.close(() => r()));
    cluster.ports.set('node-b', port);
    const r = await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    expect(r.channel).toBeUndefined();
    expect(calls).toEqual([`${WEB}>${DB}`]);
    // Remembered: the next pair goes straight to the handshake.
    await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    expect(a.channels.counters.fallbacks).toBe(2);
  });

  it('closes a channel whose pong misses the deadline and re-dials it with backoff (fake clock)', async () => {
    const clock = new FakeClock();
    const { a, b } = await pair({ a: { overrides: { clock } } });
    const first = await a.channels.ensureChannel('node-b');
    await until(() => b.channels.channel('node-a')?.id === first.id, 3000, 'node-b side up');
    // A ping answered in time keeps the channel.
    clock.advance(15_000);
    expect(first.awaitingPong).toBe(true);
    await until(() => !first.awaitingPong, 3000, 'pong');
    clock.advance(5_000);
    expect(first.closed).toBe(false);
    // node-b stops reading: the next ping goes unanswered.
    b.channels.channel('node-a')!.socket.pause();
    clock.advance(10_000);
    expect(first.awaitingPong).toBe(true);
    clock.advance(5_000);
    expect(first.closed).toBe(true);
    expect(first.closeReason).toBe('ping-timeout');
    expect(a.channels.channel('node-b')).toBeUndefined();
    // The re-dial is a backoff timer (base 20 ms, at most 200 ms here) on the clock.
    clock.advance(200);
    await until(() => !!a.channels.channel('node-b'), 3000, 're-dialled');
    expect(a.channels.channel('node-b')!.id).not.toBe(first.id);
  });

  it('falls back to the per-pair authenticator when the peer refuses the channel (no node SVID there)', async () => {
    const calls: string[] = [];
    const fallback = {
      authenticate: (req: { localId: string; remoteId: string }) => {
        calls.push(`${req.localId}>${req.remoteId}`);
        return Promise.resolve({ expiresAtMs: Date.now() + 60_000, durationMs: 1 });
      },
    };
    const { a, b } = await pair({ a: { fallback }, b: { overrides: { nodeSvid: () => undefined } } });
    const r = await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    expect(r.channel).toBeUndefined();
    expect(calls).toEqual([`${WEB}>${DB}`]);
    expect(a.channels.channel('node-b')).toBeUndefined();
    expect(b.written).toHaveLength(0);
  });

  it('closes an idle channel without re-dialling it, and opens it again for the next pair (fake clock)', async () => {
    const clock = new FakeClock();
    const { a } = await pair({
      a: { overrides: { clock, idleTimeoutMs: 60_000, pingIntervalMs: 3_600_000 } },
    });
    await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    const first = a.channels.channel('node-b')!;
    clock.advance(45_000);
    expect(first.closed).toBe(false);
    clock.advance(15_000);
    expect(first.closeReason).toBe('idle');
    expect(a.channels.channel('node-b')).toBeUndefined();
    // Not wanted any more: no re-dial scheduled or started.
    expect(a.channels.peerState('node-b')).toEqual({ open: false, dialing: false, redialScheduled: false });
    clock.advance(60_000);
    expect(a.channels.peerState('node-b')).toEqual({ open: false, dialing: false, redialScheduled: false });
    const r = await a.channels.authenticate({
      peerNode: 'node-b',
      peerAddress: '',
      peerPort: 0,
      localId: WEB,
      remoteId: DB,
    });
    expect(r.channel?.id).not.toBe(first.id);
  });

  it('answers a want for an identity the peer does not hold with remote-identity-unavailable', async () => {
    const { a } = await pair();
    const e = await failure(
      a.channels.authenticate({
        peerNode: 'node-b',
        peerAddress: '',
        peerPort: 0,
        localId: WEB,
        remoteId: OTHER,
      }),
    );
    expect(e.reason).toBe('remote-identity-unavailable');
  });
});

describe('node channels bounded by maxChannels (loopback TLS, fake clock)', () => {
  const CW = `spiffe://${TD}/ns/c/sa/cache`;
  const DW = `spiffe://${TD}/ns/d/sa/queue`;
  let nodeC: Svid;
  let nodeD: Svid;
  let cw: Svid;
  let dw: Svid;
  beforeAll(async () => {
    [nodeC, nodeD, cw, dw] = await Promise.all([
      pki.issue(nodeId('node-c')),
      pki.issue(nodeId('node-d')),
      pki.issue(CW),
      pki.issue(DW),
    ]);
  });

  /** node-a (cap 2) and three peers, one workload each; `placed` is node-a's inventory. */
  async function star() {
    const clock = new FakeClock();
    const evictions: ChannelEviction[] = [];
    const placed = new Map([
      ['node-b', new Set([DB])],
      ['node-c', new Set([CW])],
      ['node-d', new Set([DW])],
    ]);
    cluster = new Cluster();
    const common = { clock, pingIntervalMs: 3_600_000, idleTimeoutMs: 0 };
    const a = await cluster.node({
      name: 'node-a',
      peer: 'node-b',
      nodeSvid: nodeA,
      identity: new Identities(pki.bundles).add(web),
      peerWorkloads: [],
      overrides: {
        ...common,
        maxChannels: 2,
        onEvicted: (e) => evictions.push(e),
        isWorkloadOnNode: (id, n) => placed.get(n)?.has(id) ?? false,
        // Every peer dials from 127.0.0.1: node-a learns the dialler from the hello (node-d here).
        nodeForAddress: () => 'node-d',
      },
    });
    // per-pair stand-in of the leaves: a leaf refused a channel authenticates there
    const fallbacks: string[] = [];
    const leaf = (name: string, svid: Svid, wl: Svid) =>
      cluster.node({
        name,
        peer: 'node-a',
        nodeSvid: svid,
        identity: new Identities(pki.bundles).add(wl),
        peerWorkloads: [WEB],
        overrides: common,
        fallback: {
          authenticate: (r) => {
            fallbacks.push(`${name}:${r.localId}>${r.remoteId}`);
            return Promise.resolve({ expiresAtMs: Date.now() + 60_000, durationMs: 1 });
          },
        },
      });
    const b = await leaf('node-b', nodeB, db);
    const c = await leaf('node-c', nodeC, cw);
    const d = await leaf('node-d', nodeD, dw);
    return { clock, evictions, placed, a, b, c, d, fallbacks };
  }

  const req = (peerNode: string, localId: string, remoteId: string) => ({
    peerNode,
    peerAddress: '127.0.0.1',
    peerPort: 0,
    localId,
    remoteId,
  });

  it('closes the least recently used channel at the cap; its next pair dials again and needs fresh, valid proofs', async () => {
    const t = await star();
    await t.a.channels.authenticate(req('node-b', WEB, DB));
    t.clock.advance(1000);
    const first = await t.a.channels.authenticate(req('node-c', WEB, CW));
    // node-c uses the channel too (it would re-dial a channel it lost).
    await t.c.channels.authenticate(req('node-a', CW, WEB));
    const toC = t.a.channels.channel('node-c')!;
    t.clock.advance(1000);
    await t.a.channels.authenticate(req('node-b', WEB, DB));
    expect(t.a.channels.openChannels).toBe(2);
    expect(t.a.channels.counters.evictions).toBe(0);

    // A third peer at the cap: node-c (last used before node-b) is closed first.
    t.clock.advance(1000);
    const r = await t.a.channels.authenticate(req('node-d', WEB, DW));
    expect(r.channel?.peerNode).toBe('node-d');
    expect(t.a.channels.openChannels).toBe(2);
    expect(toC.closeReason).toBe('evicted');
    expect(t.a.channels.channel('node-b')).toBeDefined();
    expect(t.evictions).toEqual([
      { node: 'node-c', channel: toC.id, idleMs: 2000, busy: false, for: 'node-d' },
    ]);
    // node-c was told (bye): it closes and does not re-dial, although it used the channel.
    await until(() => t.c.channels.channel('node-a') === undefined, 3000, 'node-c side closed');
    t.clock.advance(60_000);
    expect(t.c.channels.peerState('node-a')).toEqual({ open: false, dialing: false, redialScheduled: false });
    expect(t.a.channels.peerState('node-c')).toEqual({ open: false, dialing: false, redialScheduled: false });

    // The proofs died with the channel: node-a's inventory no longer places the cache on node-c,
    // and the next pair (a new channel, evicting node-b now) gets no entry from the old proof.
    t.placed.get('node-c')!.delete(CW);
    t.clock.advance(1000);
    const pending = failure(t.a.channels.authenticate(req('node-c', WEB, CW)));
    await until(() => audited(t.a, 'workload-not-on-node'), 3000, 'fresh proof refused');
    const again = t.a.channels.channel('node-c')!;
    expect(again.id).not.toBe(toC.id);
    expect(t.evictions.map((e) => e.node)).toEqual(['node-c', 'node-b']);
    t.clock.advance(3000);
    expect((await pending).reason).toBe('proof-missing');
    // Placed again: the fresh proof is accepted and the pair authenticated over the new channel.
    t.placed.get('node-c')!.add(CW);
    t.clock.advance(REFUSAL_HOLD_MS);
    const ok = await t.a.channels.authenticate(req('node-c', WEB, CW));
    expect(ok.channel?.id).toBe(again.id);
    expect(ok.channel?.remoteProof.proofId).not.toBe(first.channel?.remoteProof.proofId);
  });

  it('spares a channel with a proof exchange in flight, and makes room for an inbound channel too', async () => {
    const t = await star();
    await t.a.channels.authenticate(req('node-c', WEB, CW));
    t.clock.advance(1000);
    await t.a.channels.authenticate(req('node-b', WEB, DB));
    // node-c stops reading: a pair with a workload node-c has not proved yet stays in flight.
    t.c.channels.channel('node-a')!.socket.pause();
    const CW2 = `spiffe://${TD}/ns/c/sa/cache2`;
    t.placed.get('node-c')!.add(CW2);
    const inFlight = failure(t.a.channels.authenticate(req('node-c', WEB, CW2)));
    await until(() => t.a.channels.proofs('node-c')!.inFlight(), 3000, 'proof exchange in flight');
    // node-d dials node-a: node-c is the least recently used but busy, so node-b is closed.
    t.clock.advance(1000);
    await t.d.channels.authenticate(req('node-a', DW, WEB));
    await until(() => t.a.channels.channel('node-d') !== undefined, 3000, 'inbound channel adopted');
    expect(t.a.channels.openChannels).toBe(2);
    expect(t.evictions).toMatchObject([{ node: 'node-b', busy: false, for: 'node-d' }]);
    expect(t.a.channels.channel('node-c')).toBeDefined();
    t.c.channels.channel('node-a')!.socket.resume();
    t.clock.advance(3000);
    // node-c does not hold cache2: its answer settles the exchange (no entry).
    expect(['remote-identity-unavailable', 'proof-missing']).toContain((await inFlight).reason);
  });

  it('refuses an inbound channel when every channel is busy: peers dialling in cannot push out channels in use', async () => {
    const t = await star();
    await t.a.channels.authenticate(req('node-c', WEB, CW));
    t.clock.advance(1000);
    await t.a.channels.authenticate(req('node-b', WEB, DB));
    // both channels busy: each peer stops reading while a pair with an unproved workload waits
    const busy: Promise<HandshakeError>[] = [];
    for (const [node, wl] of [
      ['node-c', `spiffe://${TD}/ns/c/sa/cache2`],
      ['node-b', `spiffe://${TD}/ns/b/sa/db2`],
    ] as const) {
      const leafNode = node === 'node-c' ? t.c : t.b;
      leafNode.channels.channel('node-a')!.socket.pause();
      t.placed.get(node)!.add(wl);
      busy.push(failure(t.a.channels.authenticate(req(node, WEB, wl))));
      await until(() => t.a.channels.proofs(node)!.inFlight(), 3000, `${node} exchange in flight`);
    }
    // node-d dials in: refused with a bye, nothing evicted; its pair goes per-pair.
    t.clock.advance(1000);
    const r = await t.d.channels.authenticate(req('node-a', DW, WEB));
    expect(r.channel).toBeUndefined();
    expect(t.fallbacks).toEqual([`node-d:${DW}>${WEB}`]);
    expect(t.a.channels.counters.refusedAtCap).toBe(1);
    expect(t.evictions).toEqual([]);
    expect(t.a.channels.channel('node-b')).toBeDefined();
    expect(t.a.channels.channel('node-c')).toBeDefined();
    // node-d does not dial again for its next pair while the refusal holds
    const again = await t.d.channels.authenticate(req('node-a', DW, WEB));
    expect(again.channel).toBeUndefined();
    expect(t.a.channels.counters.refusedAtCap).toBe(1);
    for (const n of [t.b, t.c]) n.channels.channel('node-a')!.socket.resume();
    t.clock.advance(3000);
    for (const p of busy) expect((await p).reason).toBeDefined();
  });
});

describe('node channel listener bounds connections still opening (loopback TCP/TLS, fake clock)', () => {
  /** A TCP connection to node-b's channel port from `from` that never starts TLS. */
  interface Silent {
    socket: Socket;
    /** The client end's address:port (read at connect: a closed socket has none). */
    peer: string;
    /** Resolves when the connection is closed (by node-b: we never close it before the end). */
    closed: Promise<void>;
    isClosed: () => boolean;
  }

  async function setup(limits: Parameters<Cluster['node']>[0]['overrides']) {
    const clock = new FakeClock();
    const refusals: HandshakeFailureEvent[] = [];
    const audit = new MemoryAuditSink();
    const byReason = new Map<string, number>();
    const reporter = new AuthReporter({
      audit,
      logger: silentLogger(),
      observer: { channelAcceptRefused: (r) => byReason.set(r, (byReason.get(r) ?? 0) + 1) },
    });
    const { a, b } = await pair({
      b: {
        overrides: {
          clock,
          openTimeoutMs: 2000,
          pingIntervalMs: 3_600_000,
          // node-a dials from 127.0.0.1; the other loopback addresses are no nodes.
          nodeForAddress: (addr) => (addr === '127.0.0.1' ? 'node-a' : undefined),
          onAcceptRefused: (f) => {
            refusals.push(f);
            reporter.channelAcceptRefused(f);
          },
          ...limits,
        },
      },
    });
    const silent: Silent[] = [];
    /** Opens one silent connection and waits until node-b has taken it (held or refused). */
    const open = async (from: string): Promise<Silent> => {
      const seen = b.channels.pendingConnections + refusals.length;
      const socket = tcpConnect({ host: '127.0.0.1', port: b.port, localAddress: from });
      socket.on('error', () => undefined);
      let isClosed = false;
      const closed = new Promise<void>((resolve) =>
        socket.once('close', () => {
          isClosed = true;
          resolve();
        }),
      );
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      await until(() => b.channels.pendingConnections + refusals.length > seen, 3000, `accept from ${from}`);
      const s = {
        socket,
        peer: `${socket.localAddress}:${socket.localPort}`,
        closed,
        isClosed: () => isClosed,
      };
      silent.push(s);
      return s;
    };
    const refusedOf = (s: Silent) => refusals.filter((f) => f.peer === s.peer);
    return { clock, refusals, audit, byReason, reporter, a, b, silent, open, refusedOf };
  }

  it('refuses connections beyond the per-address and total bounds at accept; a legit peer still gets a channel', async () => {
    const t = await setup({
      acceptLimits: {
        maxPending: 6,
        maxPendingPerAddress: 4,
        perAddressBurst: 100,
        perAddressRatePerSec: 100,
      },
    });
    try {
      // One address fills its share: the next ones are closed at once, before any TLS.
      const held = [];
      for (let i = 0; i < 4; i++) held.push(await t.open('127.0.0.2'));
      expect(t.b.channels.pendingConnections).toBe(4);
      const extra = [];
      for (let i = 0; i < 3; i++) extra.push(await t.open('127.0.0.2'));
      for (const s of extra) {
        await s.closed;
        expect(t.refusedOf(s).map((f) => f.reason)).toEqual(['too-many-connections-from-address']);
      }
      expect(held.every((s) => !s.isClosed())).toBe(true);
      expect(t.b.channels.pendingConnections).toBe(4);

      // A legit peer from another address is under both bounds: its channel opens meanwhile.
      const r = await t.a.channels.authenticate({
        peerNode: 'node-b',
        peerAddress: '127.0.0.1',
        peerPort: 0,
        localId: WEB,
        remoteId: DB,
      });
      expect(r.channel?.peerNode).toBe('node-b');
      await until(() => t.b.written.length === 1, 3000, 'reverse entry');
      expect(t.b.channels.channel('node-a')?.id).toBe(r.channel?.id);
      // It no longer counts against the bounds once it is a channel.
      expect(t.b.channels.pendingConnections).toBe(4);

      // A second address fills the total: 4 + 2 = maxPending 6, the third is refused.
      const second = [await t.open('127.0.0.3'), await t.open('127.0.0.3')];
      const over = await t.open('127.0.0.3');
      await over.closed;
      expect(t.refusedOf(over).map((f) => f.reason)).toEqual(['too-many-connections']);
      expect(second.every((s) => !s.isClosed())).toBe(true);
      expect(t.b.channels.pendingConnections).toBe(6);

      // TLS never started: each held connection is closed openTimeoutMs after accept (injected clock).
      t.clock.advance(1999);
      expect([...held, ...second].some((s) => s.isClosed())).toBe(false);
      t.clock.advance(1);
      await Promise.all([...held, ...second].map((s) => s.closed));
      await until(() => t.b.channels.pendingConnections === 0, 3000, 'pending released');
      expect(t.b.channels.counters.openTimeouts).toBe(6);
      // The channel is not one of them.
      expect(t.b.channels.channel('node-a')?.id).toBe(r.channel?.id);

      // Metric per refusal; audit one record per reason and window (written at close).
      expect(Object.fromEntries(t.byReason)).toEqual({
        'too-many-connections-from-address': 3,
        'too-many-connections': 1,
      });
      expect(t.b.channels.counters.refusedAtAccept).toBe(4);
      expect(t.audit.events).toEqual([]);
      t.reporter.close();
      const records = t.audit.events.filter((e) => e.type === 'handshake-failed');
      expect(records).toHaveLength(2);
      const rec = (reason: string) => records.find((e) => e.reason === reason)!.details;
      expect(rec('too-many-connections-from-address')).toMatchObject({
        stage: 'accept',
        listener: 'channel',
        count: 3,
        byAddress: { '127.0.0.2': 3 },
      });
      expect(rec('too-many-connections')).toMatchObject({
        stage: 'accept',
        listener: 'channel',
        count: 1,
        byAddress: { '127.0.0.3': 1 },
      });
    } finally {
      for (const s of t.silent) s.socket.destroy();
      t.reporter.close();
    }
  });

  it('rate-limits connections per source address (token bucket) even when none is held open', async () => {
    const t = await setup({
      acceptLimits: { perAddressBurst: 2, perAddressRatePerSec: 0.001 },
    });
    try {
      for (let i = 0; i < 2; i++) {
        const s = await t.open('127.0.0.4');
        s.socket.destroy();
        await s.closed;
      }
      await until(() => t.b.channels.pendingConnections === 0, 3000, 'pending released');
      const third = await t.open('127.0.0.4');
      await third.closed;
      expect(t.refusedOf(third).map((f) => f.reason)).toEqual(['rate-limited']);
      // Another address has its own bucket.
      const other = await t.open('127.0.0.5');
      expect(t.refusedOf(other)).toEqual([]);
      expect(other.isClosed()).toBe(false);
    } finally {
      for (const s of t.silent) s.socket.destroy();
      t.reporter.close();
    }
  });
});

describe('node channel accept limits key a peer node by its own address (IPv6 subnet shared with other hosts)', () => {
  // The nodes of an IPv6 cluster commonly share one /64 with each other and with other hosts. The
  // loopback has no such subnet, so a front listener on 127.0.0.1 hands each accepted socket to
  // node-b's channel listener as a connection from the next IPv6 source in `sources` (the socket,
  // its TLS and the listener's code are the real ones; only the source address is assigned).
  const NODE_A_ADDR = '2001:db8:1:2::a';
  const OTHER_HOST = '2001:db8:1:2::66';

  it('neither a host in the peer nodes’ /64 nor strangers filling the total bound lock a peer node out', async () => {
    const refusals: HandshakeFailureEvent[] = [];
    const { a, b } = await pair({
      b: {
        overrides: {
          acceptLimits: {
            maxPending: 3,
            maxPendingPerAddress: 2,
            perAddressBurst: 2,
            perAddressRatePerSec: 0.001,
          },
          openTimeoutMs: 60_000,
          onAcceptRefused: (f) => refusals.push(f),
          // The inventory: node-a is the node at NODE_A_ADDR (and at 127.0.0.1, the address the
          // channel's own socket really has); OTHER_HOST is no node.
          nodeForAddress: (addr) => (addr === NODE_A_ADDR || addr === '127.0.0.1' ? 'node-a' : undefined),
        },
      },
    });
    const listener = (b.channels as unknown as { server: Server }).server;
    const sources: string[] = [];
    const front = createTcpServer((raw) => {
      const from = sources.shift() ?? '127.0.0.1';
      Object.defineProperty(raw, 'remoteAddress', { value: from, configurable: true });
      listener.emit('connection', raw);
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const frontPort = (front.address() as AddressInfo).port;
    const held: Socket[] = [];
    /** A connection from `from` that never starts TLS, once node-b has taken it (held or refused). */
    const connectFrom = async (from: string): Promise<void> => {
      sources.push(from);
      const seen = b.channels.pendingConnections + refusals.length;
      const s = tcpConnect({ host: '127.0.0.1', port: frontPort });
      s.on('error', () => undefined);
      held.push(s);
      await until(() => b.channels.pendingConnections + refusals.length > seen, 3000, `accept from ${from}`);
    };
    try {
      // The other host opens connections and never starts TLS: 2 held (its share), the third refused.
      for (let i = 0; i < 3; i++) await connectFrom(OTHER_HOST);
      expect(b.channels.pendingConnections).toBe(2);
      expect(refusals.map((f) => [f.reason, f.peerAddress])).toEqual([
        ['too-many-connections-from-address', OTHER_HOST],
      ]);
      // Another address of that /64 counts as the same source.
      await connectFrom(`${OTHER_HOST.slice(0, -2)}67`);
      expect(refusals[1]?.reason).toBe('too-many-connections-from-address');
      // Strangers elsewhere fill the total bound (3 opening from sources that are no nodes).
      await connectFrom('2001:db8:9::1');
      expect(b.channels.pendingConnections).toBe(3);
      await connectFrom('2001:db8:a::1');
      expect(refusals.map((f) => f.reason)).toEqual([
        'too-many-connections-from-address',
        'too-many-connections-from-address',
        'too-many-connections',
      ]);

      // node-a, in the same /64, dials its channel: it counts as itself, not as that /64, and
      // not against the strangers' total bound.
      cluster.ports.set('node-b', frontPort);
      sources.push(NODE_A_ADDR);
      const r = await a.channels.authenticate({
        peerNode: 'node-b',
        peerAddress: '127.0.0.1',
        peerPort: 0,
        localId: WEB,
        remoteId: DB,
      });
      expect(r.channel?.peerNode).toBe('node-b');
      expect(b.channels.channel('node-a')?.id).toBe(r.channel?.id);
      expect(refusals).toHaveLength(3);
    } finally {
      for (const s of held) s.destroy();
      // Stops accepting; it ends once node-b (closed after the test) has closed the channel.
      front.close();
    }
  });
});
