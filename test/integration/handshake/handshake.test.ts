import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import {
  connect as netConnect,
  createServer as createNetServer,
  type AddressInfo,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { pino } from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeFrame,
  HandshakeError,
  PROTOCOL_VERSION,
  SERVER_FAILURE_CHANNEL,
  type HandshakeFailureEvent,
  type HandshakeServerStats,
} from '../../../src/auth/handshake/index.js';
import { X509SvidVerifier, type Svid } from '../../../src/spiffe/index.js';
import { MESHAUTH_ALPN, sniForSpiffeId } from '../../../src/tls/index.js';
import {
  generatePrivateKey,
  wireguardKeyAgreement,
  type WireguardKeyAgreement,
} from '../../../src/wireguard/keys.js';
import {
  makeClient,
  NODE_A,
  NODE_B,
  startServer,
  StaticIdentity,
  until,
  type ServerFixture,
} from './harness.js';
import { newPki, type TestPki } from './pki.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { MemoryAuditSink } from '../../../src/audit/sink.js';
import { ResponderAuditPacer } from '../../../src/auth/audit-pacing.js';
import { AuthReporter } from '../../../src/auth/reporter.js';
import type { IdentityEvent } from '../../../src/identity/index.js';

const WEB = 'spiffe://demo.local/ns/a/sa/web';
const DB = 'spiffe://demo.local/ns/b/sa/db';
const OTHER = 'spiffe://demo.local/ns/b/sa/other';
// Real WireGuard key pairs: the handshake proves possession of the private halves.
const wgA = wireguardKeyAgreement(generatePrivateKey());
const wgB = wireguardKeyAgreement(generatePrivateKey());
const wgX = wireguardKeyAgreement(generatePrivateKey());
const KEY_A = wgA.publicKey;
const KEY_B = wgB.publicKey;
const KEY_X = wgX.publicKey;
/** Knows `publicKey` (public) but holds another private key. */
function impostorKey(publicKey: string, holds: WireguardKeyAgreement): WireguardKeyAgreement {
  return { publicKey, sharedSecret: (peer) => holds.sharedSecret(peer) };
}
/** DER NULL: the value of the unknown extension. */
const NULL = new Uint8Array([0x05, 0x00]);

let pki: TestPki;
let rogue: TestPki;
let web: Svid;
let db: Svid;
let other: Svid;
let dbShort: Svid;
let rogueWeb: Svid;
let rogueDb: Svid;

const open: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

async function server(...args: Parameters<typeof startServer>): Promise<ServerFixture> {
  const s = await startServer(...args);
  open.push(s.server);
  return s;
}

async function failure(p: Promise<unknown>): Promise<HandshakeError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as HandshakeError).code).toBe('MESHAUTH_ERR_HANDSHAKE');
    return err as HandshakeError;
  }
  throw new Error('expected the handshake to fail');
}

function request(port: number, remoteId = DB, localId = WEB) {
  return { peerNode: NODE_B, peerAddress: '127.0.0.1', peerPort: port, localId, remoteId };
}

beforeAll(async () => {
  pki = await newPki('demo.local');
  rogue = await newPki('demo.local');
  web = await pki.issue(WEB, { ttlMs: 3_600_000 });
  db = await pki.issue(DB, { ttlMs: 3_600_000 });
  other = await pki.issue(OTHER, { ttlMs: 3_600_000 });
  dbShort = await pki.issue(DB, { ttlMs: 120_000 });
  rogueWeb = await rogue.issue(WEB, { ttlMs: 3_600_000 });
  rogueDb = await rogue.issue(DB, { ttlMs: 3_600_000 });
});

describe('mutual handshake', () => {
  it('authenticates both sides; both report the same expiry = the earliest notAfter', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(dbShort), [DB], {
      wireguard: wgB,
      expectedPeerWireguardKey: (n) => (n === NODE_A ? KEY_A : undefined),
    });
    const client = makeClient(new StaticIdentity(pki.bundles).add(web), {
      wireguard: wgA,
      expectedPeerWireguardKey: (n) => (n === NODE_B ? KEY_B : undefined),
    });
    const r = await client.authenticate(request(s.port));
    await until(() => s.server.stats().succeeded === 1);

    const earliest = Math.min(web.notAfter.getTime(), dbShort.notAfter.getTime());
    expect(earliest).toBe(dbShort.notAfter.getTime());
    expect(r.expiresAtMs).toBe(earliest);
    expect(s.authenticated).toHaveLength(1);
    const sr = s.authenticated[0]!;
    expect(sr.expiresAtMs).toBe(r.expiresAtMs);
    expect(sr).toMatchObject({
      localId: DB,
      remoteId: WEB,
      peerNode: NODE_A,
      peerAddress: '127.0.0.1',
      tlsVersion: 'TLSv1.3',
    });
    expect(r).toMatchObject({ localId: WEB, remoteId: DB, peerNode: NODE_B, tlsVersion: 'TLSv1.3' });
    expect(r.cipher).toMatch(/^TLS_/);
    expect(r.peerSerials.length).toBeGreaterThan(0);
    expect(sr.peerSerials.length).toBeGreaterThan(0);
    expect(r.localSerial).toBe(web.leaf.serialNumber);
    expect(sr.localSerial).toBe(dbShort.leaf.serialNumber);
    expect(r.peerNotAfterMs).toBe(dbShort.notAfter.getTime());
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
    expect(s.failures).toEqual([]);
    expect(s.server.stats()).toMatchObject({ succeeded: 1, failed: {} });
  });

  it('caps the expiry at maxEntryTtl, identically on both sides', async () => {
    const ttl = 5_000;
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { maxEntryTtlMs: ttl });
    const client = makeClient(new StaticIdentity(pki.bundles).add(web), { maxEntryTtlMs: ttl });
    const before = Date.now();
    const r = await client.authenticate(request(s.port));
    const after = Date.now();
    await until(() => s.authenticated.length === 1);
    expect(s.authenticated[0]!.expiresAtMs).toBe(r.expiresAtMs);
    expect(r.expiresAtMs).toBeGreaterThanOrEqual(before + ttl);
    expect(r.expiresAtMs).toBeLessThanOrEqual(after + ttl);
  });

  it('serves several identities and picks each by server name', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db).add(other), [DB, OTHER]);
    const client = makeClient(new StaticIdentity(pki.bundles).add(web));
    const [a, b] = await Promise.all([
      client.authenticate(request(s.port, DB)),
      client.authenticate(request(s.port, OTHER)),
    ]);
    expect(a.remoteId).toBe(DB);
    expect(b.remoteId).toBe(OTHER);
    await until(() => s.authenticated.length === 2);
    expect(s.authenticated.map((x) => x.localId).sort()).toEqual([DB, OTHER].sort());
  });
});

describe('verification failures never write an entry', () => {
  it('client refuses a server SVID from an untrusted CA (svid-untrusted); the server writes nothing', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(rogueDb), [DB]);
    const client = makeClient(new StaticIdentity(pki.bundles).add(web));
    const e = await failure(client.authenticate(request(s.port)));
    expect(e.reason).toBe('svid-untrusted');
    // The client hung up before its hello (during or right after TLS): the server wrote nothing.
    const f = await s.nextFailure();
    expect(f.reason).toBe('protocol-error');
    expect(['tls', 'hello']).toContain(f.stage);
    expect(s.authenticated).toEqual([]);
  });

  it('server refuses a client SVID from an untrusted CA (svid-untrusted) and says so', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB]);
    // The client trusts the rogue CA too (else it refuses its own SVID before the server sees it,
    // reason bundle-revoked); the server does not.
    const both = new Map([
      ['demo.local', [...pki.bundles.get('demo.local')!, ...rogue.bundles.get('demo.local')!]],
    ]);
    const client = makeClient(new StaticIdentity(both).add(rogueWeb));
    const e = await failure(client.authenticate(request(s.port)));
    expect(e.reason).toBe('peer-rejected');
    expect(e.details['peerReason']).toBe('svid-untrusted');
    const f = await s.nextFailure();
    expect(f.reason).toBe('svid-untrusted');
    expect(s.authenticated).toEqual([]);
    expect(s.server.stats().failed['svid-untrusted']).toBe(1);
  });

  it('server refuses a client SVID with an unknown critical extension (RFC 5280 §4.2) and writes nothing', async () => {
    const critical = await pki.issue(WEB, {
      extensions: [new x509.Extension('1.3.6.1.4.1.55555.1', true, NULL)],
    });
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB]);
    const client = makeClient(new StaticIdentity(pki.bundles).add(critical));
    const e = await failure(client.authenticate(request(s.port)));
    expect(e.reason).toBe('peer-rejected');
    expect(e.details['peerReason']).toBe('svid-unhandled-critical-extension');
    const f = await s.nextFailure();
    expect(f.reason).toBe('svid-unhandled-critical-extension');
    expect(s.authenticated).toEqual([]);
    expect(s.server.stats().failed['svid-unhandled-critical-extension']).toBe(1);
  });

  it('client refuses a server SVID with an unknown critical extension; the server writes nothing', async () => {
    const critical = await pki.issue(DB, {
      extensions: [new x509.Extension('1.3.6.1.4.1.55555.1', true, NULL)],
    });
    const s = await server(new StaticIdentity(pki.bundles).add(critical), [DB]);
    const client = makeClient(new StaticIdentity(pki.bundles).add(web));
    const e = await failure(client.authenticate(request(s.port)));
    expect(e.reason).toBe('svid-unhandled-critical-extension');
    await s.nextFailure();
    expect(s.authenticated).toEqual([]);
  });

  it('client refuses a valid SVID for another SPIFFE ID (spiffe-id-mismatch)', async () => {
    // A rogue daemon with a perfectly valid SVID, but not for the identity the client asked for.
    const tlsServer = createTlsServer({
      cert: other.chainPem,
      key: other.keyPem,
      minVersion: 'TLSv1.3',
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: [MESHAUTH_ALPN],
    });
    let helloBytes = 0;
    tlsServer.on('secureConnection', (sock) => sock.on('data', (d: Buffer) => (helloBytes += d.length)));
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    open.push({ close: () => new Promise((r) => tlsServer.close(r)) });
    const port = (tlsServer.address() as { port: number }).port;
    const e = await failure(makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(port)));
    expect(e.reason).toBe('spiffe-id-mismatch');
    expect(e.message).toContain(OTHER);
    expect(helloBytes).toBe(0);
  });

  it('server refuses a hello whose clientId is not the certificate (spiffe-id-mismatch)', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB]);
    // The client presents OTHER's valid SVID while claiming to be WEB.
    const client = makeClient(new StaticIdentity(pki.bundles).add(other, WEB));
    const e = await failure(client.authenticate(request(s.port)));
    expect(e.details['peerReason']).toBe('spiffe-id-mismatch');
    expect((await s.nextFailure()).reason).toBe('spiffe-id-mismatch');
    expect(s.authenticated).toEqual([]);
  });

  it('a server without the requested identity fails the TLS handshake (remote-identity-unavailable)', async () => {
    const identity = new StaticIdentity(pki.bundles).add(db);
    const s = await server(identity, [DB, OTHER]); // OTHER is a local workload but its SVID is not held
    const client = makeClient(new StaticIdentity(pki.bundles).add(web));
    for (const wanted of ['spiffe://demo.local/ns/z/sa/unknown', OTHER]) {
      const e = await failure(client.authenticate(request(s.port, wanted)));
      expect(e.reason).toBe('remote-identity-unavailable');
      const f = await s.nextFailure();
      expect(f.reason).toBe('remote-identity-unavailable');
      expect(f.stage).toBe('tls');
    }
    expect(s.authenticated).toEqual([]);
  });

  describe('a local workload whose SVID is not held yet', () => {
    /** An identity source whose SVIDs arrive later, announced to subscribers as sources do. */
    class ArrivingIdentity extends StaticIdentity {
      private readonly listeners = new Set<(e: IdentityEvent) => void>();
      subscribe(listener: (e: IdentityEvent) => void): () => void {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
      }
      deliver(svid: Svid): void {
        this.add(svid);
        for (const l of [...this.listeners]) l({ type: 'svid-updated', spiffeId: svid.spiffeId, svid });
      }
      get subscribers(): number {
        return this.listeners.size;
      }
    }

    it('waits for the identity source and completes the handshake when the SVID arrives', async () => {
      const clock = new FakeClock();
      const identity = new ArrivingIdentity(pki.bundles);
      const s = await server(identity, [DB], { clock });
      const pending = makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port));
      await until(() => identity.subscribers === 1, 5000, 'the server to wait for the SVID');
      expect(clock.pending).toBe(1);
      identity.deliver(db);
      const r = await pending;
      expect(r).toMatchObject({ localId: WEB, remoteId: DB, peerNode: NODE_B });
      expect(s.authenticated).toHaveLength(1);
      expect(identity.subscribers).toBe(0);
      expect(clock.pending).toBe(0);
    });

    it('refuses with remote-identity-unavailable when the SVID does not come within svidWaitMs', async () => {
      const clock = new FakeClock();
      const identity = new ArrivingIdentity(pki.bundles);
      const s = await server(identity, [DB], { clock, limits: { svidWaitMs: 800 } });
      const pending = failure(
        makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port)),
      );
      await until(() => identity.subscribers === 1, 5000, 'the server to wait for the SVID');
      clock.advance(800);
      const e = await pending;
      expect(e.reason).toBe('remote-identity-unavailable');
      const f = await s.nextFailure();
      expect(f.reason).toBe('remote-identity-unavailable');
      expect(f.message).toContain('waited 800 ms');
      expect(identity.subscribers).toBe(0);
      // Delivered too late: nothing is written for the refused handshake.
      identity.deliver(db);
      expect(s.authenticated).toEqual([]);
    });
  });

  describe('the responder paces its entry by its own audit queue', () => {
    function paced() {
      const queue = { depth: 100 };
      const clock = new FakeClock();
      const audit = new MemoryAuditSink();
      const pacer = new ResponderAuditPacer({
        backpressure: { depth: () => queue.depth, highWater: 80, lowWater: 50, pollMs: 20 },
        clock,
        audit,
      });
      return { queue, clock, audit, pacer };
    }

    it('a verified client waits while the queue is above high-water and is written once it drains', async () => {
      const p = paced();
      const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { auditPacer: p.pacer });
      const pending = makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port));
      await until(() => p.pacer.stats().waiting === 1, 10_000, 'the entry to wait for the audit queue');
      expect(s.authenticated).toEqual([]);
      p.queue.depth = 50;
      p.clock.advance(20);
      const r = await pending;
      expect(r).toMatchObject({ localId: WEB, remoteId: DB, peerNode: NODE_B });
      expect(s.authenticated).toHaveLength(1);
      expect(p.pacer.stats()).toEqual({ waiting: 0, paused: 0, paced: 1, refused: 0 });
      expect(p.audit.events).toEqual([]);
    });

    it('refuses audit-busy (nothing written) when it does not drain in time; the client authenticates after', async () => {
      const p = paced();
      const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { auditPacer: p.pacer });
      const client = makeClient(new StaticIdentity(pki.bundles).add(web));
      const pending = failure(client.authenticate(request(s.port)));
      await until(() => p.pacer.stats().waiting === 1, 10_000, 'the entry to wait for the audit queue');
      // Past any budget the connection can have left (handshakeTimeoutMs 5000 from accept).
      p.clock.advance(5000);
      const e = await pending;
      // The client learns the server's reason, and retries it (AuthManager backoff) like any failure.
      expect(e.reason).toBe('audit-busy');
      expect(e.details).toMatchObject({ peerReason: 'audit-busy' });
      const f = await s.nextFailure();
      expect(f).toMatchObject({ reason: 'audit-busy', stage: 'entry', localId: DB, remoteId: WEB });
      expect(s.authenticated).toEqual([]);
      expect(s.server.stats().failed).toEqual({ 'audit-busy': 1 });
      // Still over low-water: the refusal adds nothing to the queue yet.
      expect(p.audit.events).toEqual([]);
      p.queue.depth = 10;
      p.clock.advance(20);
      expect(p.audit.events).toHaveLength(1);
      expect(p.audit.events[0]).toMatchObject({
        type: 'handshake-failed',
        reason: 'audit-busy',
        direction: 'server',
        details: { refused: 1, byPath: { handshake: 1, channel: 0 }, byNode: { [NODE_A]: 1 } },
      });
      // Drained: the retry goes through at once.
      const r = await client.authenticate(request(s.port));
      expect(r).toMatchObject({ localId: WEB, remoteId: DB });
      expect(s.authenticated).toHaveLength(1);
      expect(p.pacer.stats()).toMatchObject({ paced: 0, refused: 1, waiting: 0 });
    });

    it('what the inventory says of the client is checked again after the wait: a change while it waited writes nothing', async () => {
      const changes: Array<{ name: string; reason: string; change: (v: typeof view) => void }> = [
        { name: 'WireGuard key replaced', reason: 'wireguard-key-mismatch', change: (v) => (v.key = KEY_B) },
        { name: 'address now another node', reason: 'node-mismatch', change: (v) => (v.node = 'node-z') },
        { name: 'workload left the node', reason: 'workload-not-on-node', change: (v) => (v.onNode = false) },
      ];
      const view = { key: KEY_A, node: NODE_A, onNode: true };
      for (const c of changes) {
        Object.assign(view, { key: KEY_A, node: NODE_A, onNode: true });
        const p = paced();
        const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
          auditPacer: p.pacer,
          wireguard: wgB,
          expectedPeerWireguardKey: (n) => (n === NODE_A ? view.key : undefined),
          nodeForAddress: () => view.node,
          isWorkloadOnNode: () => view.onNode,
        });
        const client = makeClient(new StaticIdentity(pki.bundles).add(web), {
          wireguard: wgA,
          expectedPeerWireguardKey: (n) => (n === NODE_B ? KEY_B : undefined),
        });
        const pending = failure(client.authenticate(request(s.port)));
        await until(() => p.pacer.stats().waiting === 1, 10_000, `${c.name}: the entry to wait`);
        c.change(view);
        p.queue.depth = 0;
        p.clock.advance(20);
        const e = await pending;
        expect(e.details['peerReason'], c.name).toBe(c.reason);
        const f = await s.nextFailure();
        expect(f, c.name).toMatchObject({ reason: c.reason, stage: 'entry', localId: DB, remoteId: WEB });
        expect(s.authenticated, c.name).toEqual([]);
        expect(p.pacer.stats(), c.name).toMatchObject({ paced: 1, refused: 0 });
        // Unchanged, the same client is written after the same wait.
        Object.assign(view, { key: KEY_A, node: NODE_A, onNode: true });
        p.queue.depth = 100;
        const ok = client.authenticate(request(s.port));
        await until(() => p.pacer.stats().waiting === 1, 10_000, `${c.name}: the second entry to wait`);
        p.queue.depth = 0;
        p.clock.advance(20);
        await expect(ok).resolves.toMatchObject({ localId: WEB, remoteId: DB });
        expect(s.authenticated, c.name).toHaveLength(1);
      }
    });

    it('a client that goes away while its entry waits gets nothing written, even after the queue drains', async () => {
      const p = paced();
      const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { auditPacer: p.pacer });
      const ctrl = new AbortController();
      const pending = failure(
        makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate({
          ...request(s.port),
          signal: ctrl.signal,
        }),
      );
      await until(() => p.pacer.stats().waiting === 1, 10_000, 'the entry to wait for the audit queue');
      ctrl.abort();
      expect((await pending).reason).toBe('aborted');
      await until(() => p.pacer.stats().waiting === 0, 10_000, 'the wait to end with the connection');
      p.queue.depth = 0;
      p.clock.advance(20);
      const f = await s.nextFailure();
      expect(f.reason).toBe('aborted');
      expect(s.authenticated).toEqual([]);
      expect(p.pacer.stats()).toMatchObject({ paced: 0, refused: 0 });
    });
  });

  it('node-mismatch when the source address belongs to another node than the hello says', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { nodeForAddress: () => 'node-z' });
    const e = await failure(
      makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port)),
    );
    expect(e.details['peerReason']).toBe('node-mismatch');
    const f = await s.nextFailure();
    expect(f).toMatchObject({ reason: 'node-mismatch', remoteId: WEB, localId: DB, peerNode: NODE_A });
    expect(s.authenticated).toEqual([]);
  });

  it('node-mismatch when the client addressed another node', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB]);
    const client = makeClient(new StaticIdentity(pki.bundles).add(web));
    const e = await failure(client.authenticate({ ...request(s.port), peerNode: 'node-c' }));
    expect(e.details['peerReason']).toBe('node-mismatch');
    expect(s.authenticated).toEqual([]);
  });

  it('node-mismatch when the client claims to be the server node itself (a same-node pair)', async () => {
    // The address and the hello agree, but a pair within one node never needs a network handshake.
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { nodeForAddress: () => NODE_B });
    const client = makeClient(new StaticIdentity(pki.bundles).add(web), { nodeName: NODE_B });
    const e = await failure(client.authenticate(request(s.port)));
    expect(e.details['peerReason']).toBe('node-mismatch');
    const f = await s.nextFailure();
    expect(f).toMatchObject({ reason: 'node-mismatch', remoteId: WEB, localId: DB, peerNode: NODE_B });
    expect(f.message).toContain('same-node');
    expect(s.authenticated).toEqual([]);
  });

  it('workload-not-on-node when the inventory does not place the client workload there', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      isWorkloadOnNode: (id) => id !== WEB,
    });
    const e = await failure(
      makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port)),
    );
    expect(e.details['peerReason']).toBe('workload-not-on-node');
    expect((await s.nextFailure()).reason).toBe('workload-not-on-node');
    expect(s.authenticated).toEqual([]);
  });

  it('wireguard-key-mismatch on the server: the client node presents another key than the inventory holds', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      wireguard: wgB,
      expectedPeerWireguardKey: (n) => (n === NODE_A ? KEY_A : undefined),
    });
    for (const sent of [wgX, undefined]) {
      const client = makeClient(new StaticIdentity(pki.bundles).add(web), {
        ...(sent ? { wireguard: sent } : {}),
        expectedPeerWireguardKey: () => KEY_B,
      });
      const e = await failure(client.authenticate(request(s.port)));
      expect(e.details['peerReason']).toBe('wireguard-key-mismatch');
      expect((await s.nextFailure()).reason).toBe('wireguard-key-mismatch');
    }
    expect(s.authenticated).toEqual([]);
  });

  it('wireguard-key-mismatch on the client: the server node presents another key; the client writes nothing', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      wireguard: wgX,
    });
    const client = makeClient(new StaticIdentity(pki.bundles).add(web), {
      expectedPeerWireguardKey: (n) => (n === NODE_B ? KEY_B : undefined),
    });
    const e = await failure(client.authenticate(request(s.port)));
    expect(e.reason).toBe('wireguard-key-mismatch');
    expect(e.message).toContain(KEY_X);
  });

  it("wireguard-key-proof-invalid on the server: a client that knows its node's public key but not the private key", async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      wireguard: wgB,
      expectedPeerWireguardKey: (n) => (n === NODE_A ? KEY_A : undefined),
    });
    const client = makeClient(new StaticIdentity(pki.bundles).add(web), {
      wireguard: impostorKey(KEY_A, wgX),
      expectedPeerWireguardKey: (n) => (n === NODE_B ? KEY_B : undefined),
    });
    const e = await failure(client.authenticate(request(s.port)));
    expect(e.details['peerReason']).toBe('wireguard-key-proof-invalid');
    const f = await s.nextFailure();
    expect(f.reason).toBe('wireguard-key-proof-invalid');
    expect(f.stage).toBe('hello');
    expect(s.authenticated).toEqual([]);
  });

  it("wireguard-key-proof-invalid on the client: a server that presents its node's public key without the private key", async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      wireguard: impostorKey(KEY_B, wgX),
      expectedPeerWireguardKey: (n) => (n === NODE_A ? KEY_A : undefined),
    });
    // The impostor server cannot verify the honest client's proof either, so it is told to write
    // nothing; check the client's own verification with a server that skips checking the client.
    const lax = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      wireguard: impostorKey(KEY_B, wgX),
    });
    const client = makeClient(new StaticIdentity(pki.bundles).add(web), {
      wireguard: wgA,
      expectedPeerWireguardKey: (n) => (n === NODE_B ? KEY_B : undefined),
    });
    expect((await failure(client.authenticate(request(s.port)))).details['peerReason']).toBe(
      'wireguard-key-proof-invalid',
    );
    const e = await failure(client.authenticate(request(lax.port)));
    expect(e.reason).toBe('wireguard-key-proof-invalid');
    expect(e.message).toContain(KEY_B);
    // The honest pair passes with the same client.
    const honest = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      wireguard: wgB,
      expectedPeerWireguardKey: (n) => (n === NODE_A ? KEY_A : undefined),
    });
    await expect(client.authenticate(request(honest.port))).resolves.toMatchObject({ remoteId: DB });
    expect(honest.authenticated).toHaveLength(1);
  });

  it('entry expiry includes the trust anchors: a CA that ends first decides it on both sides', async () => {
    const shortCa = await newPki('demo.local', { caTtlMs: 600_000 });
    const caNotAfter = Date.parse(new X509Certificate(shortCa.bundles.get('demo.local')![0]!).validTo);
    const w = await shortCa.issue(WEB, { ttlMs: 3_600_000 });
    const d = await shortCa.issue(DB, { ttlMs: 3_600_000 });
    const s = await server(new StaticIdentity(shortCa.bundles).add(d), [DB]);
    const r = await makeClient(new StaticIdentity(shortCa.bundles).add(w)).authenticate(request(s.port));
    await until(() => s.authenticated.length === 1);
    expect(caNotAfter).toBeLessThan(Math.min(w.notAfter.getTime(), d.notAfter.getTime()));
    expect(r.expiresAtMs).toBe(caNotAfter);
    expect(s.authenticated[0]!.expiresAtMs).toBe(caNotAfter);
    // Both record what they relied on: the peer's chain and their own, each with its anchor.
    const fp = new X509Certificate(shortCa.bundles.get('demo.local')![0]!).fingerprint256;
    for (const trust of [r.trust, s.authenticated[0]!.trust]) {
      expect(trust.chains).toHaveLength(2);
      for (const c of trust.chains) expect(c).toMatchObject({ trustDomain: 'demo.local', anchors: [fp] });
    }
  });

  it('svid-removed: the server writes nothing when its SVID went away while the client was mid-handshake', async () => {
    const identity = new StaticIdentity(pki.bundles).add(db);
    const s = await server(identity, [DB]);
    const reply = await new Promise<string>((resolve) => {
      let out = '';
      const c = tlsConnect({
        host: '127.0.0.1',
        port: s.port,
        servername: sniForSpiffeId(DB),
        minVersion: 'TLSv1.3',
        cert: web.chainPem,
        key: web.keyPem,
        rejectUnauthorized: false,
        ALPNProtocols: [MESHAUTH_ALPN],
      });
      c.on('secureConnect', () => {
        // The handshake is held open here; meanwhile the identity source drops our SVID.
        identity.svids.delete(DB);
        c.write(
          encodeFrame({
            v: PROTOCOL_VERSION,
            clientNode: NODE_A,
            serverNode: NODE_B,
            clientId: WEB,
            serverId: DB,
          }),
        );
      });
      c.on('data', (d: Buffer) => (out += d.subarray(4).toString()));
      c.on('error', () => {});
      c.on('close', () => resolve(out));
    });
    expect(JSON.parse(reply)).toMatchObject({ ok: false, reason: 'svid-removed' });
    expect((await s.nextFailure()).reason).toBe('svid-removed');
    expect(s.authenticated).toEqual([]);
  });

  it('a refusal of the entry write keeps its reason (e.g. workload-moved) and the client is told', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      onAuthenticated: () => {
        throw Object.assign(new Error('web left node-a'), { reason: 'workload-moved' });
      },
    });
    const e = await failure(
      makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port)),
    );
    expect(e.details['peerReason']).toBe('workload-moved');
    expect((await s.nextFailure()).reason).toBe('workload-moved');
  });

  it('entry-write-failed when the server cannot write its entry; the client is told', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      onAuthenticated: async () => {
        throw new Error('update auth map: E2BIG');
      },
    });
    const e = await failure(
      makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port)),
    );
    expect(e.details['peerReason']).toBe('entry-write-failed');
    expect((await s.nextFailure()).message).toContain('E2BIG');
  });

  it('a throwing inventory callback is an internal-error, not a crash', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      isWorkloadOnNode: () => {
        throw new Error('inventory exploded');
      },
      onFailure: () => {
        throw new Error('metrics exploded too');
      },
    });
    const e = await failure(
      makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port)),
    );
    expect(e.details['peerReason']).toBe('internal-error');
    expect(s.server.stats().failed['internal-error']).toBe(1);
  });

  it('client reasons: no-local-svid, peer-unreachable, timeout, aborted', async () => {
    const client = makeClient(new StaticIdentity(pki.bundles).add(web), { timeoutMs: 300 });
    expect((await failure(client.authenticate(request(1, DB, OTHER)))).reason).toBe('no-local-svid');

    const closed = createNetServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    expect((await failure(client.authenticate(request(closedPort)))).reason).toBe('peer-unreachable');

    const silent: Socket[] = [];
    const blackhole = createNetServer((sock) => silent.push(sock));
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
    open.push({
      close: () => {
        for (const x of silent) x.destroy();
        return new Promise((r) => blackhole.close(r));
      },
    });
    const bhPort = (blackhole.address() as { port: number }).port;
    const started = Date.now();
    expect((await failure(client.authenticate(request(bhPort)))).reason).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(2000);

    const ac = new AbortController();
    const p = client.authenticate({ ...request(bhPort), signal: ac.signal });
    ac.abort();
    expect((await failure(p)).reason).toBe('aborted');
  });
});

describe('bad input on the server port', () => {
  const limits = { handshakeTimeoutMs: 600, perPeerRatePerSec: 1000, perPeerBurst: 1000 };

  /** Opens a TCP connection, runs `act`, and resolves when the server closes it (with what it sent). */
  function rawConnection(
    port: number,
    act: (s: Socket) => void,
  ): Promise<{ closedAfterMs: number; received: number }> {
    return new Promise((resolve) => {
      const started = Date.now();
      let received = 0;
      const s = netConnect(port, '127.0.0.1', () => act(s));
      s.on('data', (d) => (received += d.length));
      s.on('error', () => {});
      s.on('close', () => resolve({ closedAfterMs: Date.now() - started, received }));
    });
  }

  async function expectCounted(s: ServerFixture, reason: string, n = 1): Promise<HandshakeServerStats> {
    await until(() => (s.server.stats().failed[reason] ?? 0) >= n, 5000, `${n} × ${reason}`);
    await until(() => s.server.stats().active === 0, 5000, 'no active connections');
    return s.server.stats();
  }

  it('garbage bytes: closed, counted as protocol-error, logged and published', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: 'info' },
      { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) },
    );
    const published: HandshakeFailureEvent[] = [];
    const onMessage = (m: unknown): void => void published.push(m as HandshakeFailureEvent);
    subscribe(SERVER_FAILURE_CHANNEL, onMessage);
    open.push({ close: () => unsubscribe(SERVER_FAILURE_CHANNEL, onMessage) });
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits, logger });
    const r = await rawConnection(s.port, (sock) =>
      sock.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')),
    );
    expect(r.closedAfterMs).toBeLessThan(500);
    const r2 = await rawConnection(s.port, (sock) => sock.write(Buffer.alloc(4096, 0x16)));
    expect(r2.closedAfterMs).toBeLessThan(500);
    const st = await expectCounted(s, 'protocol-error', 2);
    expect(st.accepted).toBe(2);
    expect(s.authenticated).toEqual([]);
    const logged = lines.filter((l) => l['event'] === 'handshake_failed');
    expect(logged).toHaveLength(2);
    expect(logged[0]).toMatchObject({
      component: 'handshake-server',
      reason: 'protocol-error',
      stage: 'tls',
    });
    expect(String(logged[0]!['peer'])).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(published.filter((p) => p.reason === 'protocol-error')).toHaveLength(2);
  });

  it('a client without a certificate is refused (svid-*) after TLS', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    const frames = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      const c = tlsConnect({
        host: '127.0.0.1',
        port: s.port,
        servername: sniForSpiffeId(DB),
        minVersion: 'TLSv1.3',
        rejectUnauthorized: false,
        ALPNProtocols: [MESHAUTH_ALPN],
      });
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('error', () => {});
      c.on('close', () => resolve(Buffer.concat(chunks)));
    });
    const f = await s.nextFailure();
    expect(f.reason).toMatch(/^svid-/);
    expect(f.stage).toBe('verify');
    expect((JSON.parse(frames.subarray(4).toString()) as { reason: string }).reason).toBe(f.reason);
    expect(s.authenticated).toEqual([]);
  });

  it('the server issues no TLS session ticket, so there is nothing to resume (RFC 8446 §4.6.1)', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    const hello = encodeFrame({
      v: PROTOCOL_VERSION,
      clientNode: NODE_A,
      serverNode: NODE_B,
      clientId: WEB,
      serverId: DB,
    });
    const attempt = () =>
      new Promise<{ reused: boolean; session: Buffer | undefined; reply: string }>((resolve) => {
        let got: Buffer | undefined;
        let reused = false;
        let reply = '';
        const c = tlsConnect({
          host: '127.0.0.1',
          port: s.port,
          servername: sniForSpiffeId(DB),
          minVersion: 'TLSv1.3',
          cert: web.chainPem,
          key: web.keyPem,
          rejectUnauthorized: false,
          ALPNProtocols: [MESHAUTH_ALPN],
        });
        c.on('session', (x: Buffer) => (got = x));
        c.on('secureConnect', () => {
          reused = c.isSessionReused();
          c.write(hello);
        });
        c.on('data', (d: Buffer) => (reply += d.subarray(4).toString()));
        c.on('error', () => {});
        c.on('close', () => resolve({ reused, session: got, reply }));
      });
    // The settle point is the server's own close after its result: tickets go out right after the
    // handshake, long before that.
    const first = await attempt();
    expect(first.reply).toContain('"ok":true');
    expect(first.session).toBeUndefined();
    const second = await attempt();
    expect(second.reused).toBe(false);
    expect(second.session).toBeUndefined();
    expect(second.reply).toContain('"ok":true');
    await until(() => s.authenticated.length === 2);
    expect(s.failures).toEqual([]);
  });

  it('a client that does not negotiate the meshauth ALPN is refused', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    await new Promise<void>((resolve) => {
      const c = tlsConnect({
        host: '127.0.0.1',
        port: s.port,
        servername: sniForSpiffeId(DB),
        minVersion: 'TLSv1.3',
        cert: web.chainPem,
        key: web.keyPem,
        rejectUnauthorized: false,
      });
      c.on('secureConnect', () =>
        c.write(
          encodeFrame({
            v: PROTOCOL_VERSION,
            clientNode: NODE_A,
            serverNode: NODE_B,
            clientId: WEB,
            serverId: DB,
          }),
        ),
      );
      c.resume();
      c.on('error', () => {});
      c.on('close', () => resolve());
    });
    const f = await s.nextFailure();
    expect(f.reason).toBe('protocol-error');
    expect(f.message).toContain('ALPN');
    expect(s.authenticated).toEqual([]);
  });

  it('a TLS 1.2-only client is refused and counted as tls-version', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    const err = await new Promise<Error>((resolve) => {
      const c = tlsConnect({
        host: '127.0.0.1',
        port: s.port,
        servername: sniForSpiffeId(DB),
        maxVersion: 'TLSv1.2',
        cert: web.chainPem,
        key: web.keyPem,
        rejectUnauthorized: false,
      });
      c.on('secureConnect', () => resolve(new Error('TLS 1.2 handshake unexpectedly succeeded')));
      c.on('error', resolve);
    });
    expect((err as NodeJS.ErrnoException).code).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    await expectCounted(s, 'tls-version');
  });

  it('slowloris during TLS: bytes trickled, closed at handshakeTimeoutMs (timeout)', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    let timer: NodeJS.Timeout | undefined;
    const r = await rawConnection(s.port, (sock) => {
      // A TLS record header announcing a 512-byte handshake message, then one byte every 50 ms.
      sock.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
      timer = setInterval(() => sock.writable && sock.write(Buffer.from([0x01])), 50);
    });
    clearInterval(timer);
    expect(r.closedAfterMs).toBeGreaterThanOrEqual(550);
    expect(r.closedAfterMs).toBeLessThan(2000);
    await expectCounted(s, 'timeout');
  });

  /** A TLS connection with a valid client SVID that then misbehaves inside TLS. */
  function tlsConnection(port: number, act: (write: (b: Buffer) => void) => void) {
    return new Promise<{ closedAfterMs: number; frames: Buffer }>((resolve, reject) => {
      let started = 0;
      const chunks: Buffer[] = [];
      const c = tlsConnect({
        host: '127.0.0.1',
        port,
        servername: sniForSpiffeId(DB),
        minVersion: 'TLSv1.3',
        cert: web.chainPem,
        key: web.keyPem,
        rejectUnauthorized: false,
        ALPNProtocols: [MESHAUTH_ALPN],
      });
      c.on('secureConnect', () => {
        started = Date.now();
        act((b) => c.write(b));
      });
      c.on('data', (d: Buffer) => chunks.push(d));
      c.on('error', () => {});
      c.on('close', () =>
        started
          ? resolve({ closedAfterMs: Date.now() - started, frames: Buffer.concat(chunks) })
          : reject(new Error('no TLS')),
      );
    });
  }

  function resultReason(frames: Buffer): unknown {
    return (JSON.parse(frames.subarray(4).toString()) as { reason?: unknown }).reason;
  }

  it('slowloris inside TLS: a hello trickled byte by byte is cut at handshakeTimeoutMs', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    const frame = encodeFrame({
      v: PROTOCOL_VERSION,
      clientNode: NODE_A,
      serverNode: NODE_B,
      clientId: WEB,
      serverId: DB,
    });
    let timer: NodeJS.Timeout | undefined;
    const r = await tlsConnection(s.port, (write) => {
      let i = 0;
      timer = setInterval(() => i < frame.length && write(frame.subarray(i, ++i)), 40);
    });
    clearInterval(timer);
    expect(r.closedAfterMs).toBeLessThan(1500);
    expect(resultReason(r.frames)).toBe('timeout');
    await expectCounted(s, 'timeout');
    expect(s.authenticated).toEqual([]);
  });

  it('an oversized frame is refused from its header alone (protocol-error)', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    const header = Buffer.alloc(4);
    header.writeUInt32BE(16 * 1024 + 1);
    const r = await tlsConnection(s.port, (write) => write(header));
    expect(r.closedAfterMs).toBeLessThan(500);
    expect(resultReason(r.frames)).toBe('protocol-error');
    await expectCounted(s, 'protocol-error');
    expect(s.authenticated).toEqual([]);
  });

  it('a malformed hello (wrong types) is a protocol-error', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    const r = await tlsConnection(s.port, (write) =>
      write(
        encodeFrame({ v: PROTOCOL_VERSION, clientNode: 5, serverNode: NODE_B, clientId: WEB, serverId: DB }),
      ),
    );
    expect(resultReason(r.frames)).toBe('protocol-error');
    await expectCounted(s, 'protocol-error');
  });

  it('early close, before and after TLS, is counted', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], { limits });
    await rawConnection(s.port, (sock) => sock.end());
    await rawConnection(s.port, (sock) => sock.end(Buffer.from([0x16, 0x03, 0x01])));
    await tlsConnection(s.port, () => {}).catch(() => {}); // the server waits for the hello...
    await expectCounted(s, 'timeout'); // ...which never comes
    await expectCounted(s, 'protocol-error', 2);
  });

  it('per-peer rate limit: beyond the burst, connections are closed at once (rate-limited)', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      limits: { ...limits, perPeerRatePerSec: 0.5, perPeerBurst: 3 },
    });
    const client = makeClient(new StaticIdentity(pki.bundles).add(web));
    const outcomes = await Promise.allSettled(
      Array.from({ length: 6 }, () => client.authenticate(request(s.port))),
    );
    const ok = outcomes.filter((o) => o.status === 'fulfilled').length;
    const refused = outcomes
      .filter((o) => o.status === 'rejected')
      .map((o) => (o as PromiseRejectedResult).reason as HandshakeError);
    expect(ok).toBe(3);
    expect(refused).toHaveLength(3);
    for (const e of refused) expect(e.reason).toBe('peer-unreachable');
    const st = await expectCounted(s, 'rate-limited', 3);
    expect(st.succeeded).toBe(3);
  });

  it('per-peer rate limit: a node has its own bucket, not its IPv6 /64 shared with other hosts', async () => {
    // The nodes of an IPv6 cluster commonly share one /64. The loopback has no such subnet, so a
    // front listener on 127.0.0.1 hands each accepted socket to the handshake server as coming from
    // the next IPv6 source in `sources` (socket, TLS and server code are the real ones).
    const NODE_A_ADDR = '2001:db8:1:2::a';
    const sources: string[] = [];
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      limits: { ...limits, perPeerRatePerSec: 0.001, perPeerBurst: 2 },
      nodeForAddress: (a) => (a === NODE_A_ADDR ? NODE_A : undefined),
    });
    const listener = (s.server as unknown as { server: NetServer }).server;
    const front = createNetServer((raw) => {
      Object.defineProperty(raw, 'remoteAddress', { value: sources.shift(), configurable: true });
      listener.emit('connection', raw);
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    open.push({ close: () => void front.close() });
    const frontPort = (front.address() as AddressInfo).port;
    // Another host of that /64 empties its bucket with plain connects.
    for (let i = 0; i < 3; i++) {
      sources.push(`2001:db8:1:2::${60 + i}`);
      await rawConnection(frontPort, (sock) => sock.end());
    }
    await expectCounted(s, 'rate-limited', 1);
    // node-a, in the same /64, still authenticates.
    sources.push(NODE_A_ADDR);
    const client = makeClient(new StaticIdentity(pki.bundles).add(web));
    const r = await client.authenticate(request(frontPort));
    expect(r.remoteId).toBe(DB);
    expect(s.server.stats().failed['rate-limited']).toBe(1);
  });

  it('a flood of TCP connects beyond the rate limit is audited as one record per window, not one each', async () => {
    const audit = new MemoryAuditSink();
    const clock = new FakeClock(1_000_000);
    const reporter = new AuthReporter({ audit, logger: pino({ level: 'silent' }), clock });
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      limits: { ...limits, perPeerRatePerSec: 0.5, perPeerBurst: 2 },
      onFailure: (f) => reporter.serverFailed(f),
    });
    // Anonymous: plain TCP connects that send nothing, from one address.
    const flood = 200;
    await Promise.all(Array.from({ length: flood }, () => rawConnection(s.port, () => {})));
    const st = await expectCounted(s, 'rate-limited', flood - 4);
    const refused = st.failed['rate-limited']!;
    expect(audit.events.filter((e) => e.reason === 'rate-limited')).toEqual([]);
    clock.advance(10_000);
    const records = audit.events.filter((e) => e.reason === 'rate-limited');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      type: 'handshake-failed',
      direction: 'server',
      details: { stage: 'accept', count: refused, byAddress: { '127.0.0.1': refused } },
    });
    reporter.close();
  });

  it('maxConnections: further connections are closed at once (too-many-connections)', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      limits: { ...limits, maxConnections: 2, handshakeTimeoutMs: 3000 },
    });
    const idle: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      idle.push(
        await new Promise<Socket>((r) => {
          const x = netConnect(s.port, '127.0.0.1', () => r(x));
          x.on('error', () => {});
        }),
      );
    }
    await until(() => s.server.stats().active === 2);
    const third = await rawConnection(s.port, () => {});
    expect(third.closedAfterMs).toBeLessThan(500);
    expect(s.server.stats().failed['too-many-connections']).toBe(1);
    for (const x of idle) x.destroy();
    await until(() => s.server.stats().active === 0);
    // Capacity is back.
    const r = await makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port));
    expect(r.remoteId).toBe(DB);
  });

  it('memory stays bounded over many bad connections and the server still works', async () => {
    const { setFlagsFromString } = await import('node:v8');
    const { runInNewContext } = await import('node:vm');
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      limits: { handshakeTimeoutMs: 300, perPeerRatePerSec: 10_000, perPeerBurst: 10_000 },
    });
    const oversized = Buffer.alloc(4);
    oversized.writeUInt32BE(0xffffffff);
    const round = async (n: number): Promise<void> => {
      const batch: Promise<unknown>[] = [];
      for (let i = 0; i < n; i++) {
        const kind = i % 4;
        if (kind === 0) batch.push(rawConnection(s.port, (x) => x.write(Buffer.alloc(2048, i & 0xff))));
        else if (kind === 1) batch.push(rawConnection(s.port, (x) => x.end()));
        else if (kind === 2)
          batch.push(
            rawConnection(s.port, (x) => x.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01]))),
          );
        else batch.push(tlsConnection(s.port, (w) => w(oversized)).catch(() => {}));
        if (batch.length >= 50) await Promise.all(batch.splice(0));
      }
      await Promise.all(batch);
      await until(() => s.server.stats().active === 0, 10_000, 'all bad connections closed');
    };
    await round(100); // warm-up: lazy allocations, JIT
    gc();
    const before = process.memoryUsage().heapUsed;
    await round(600);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    const st = s.server.stats();
    const failed = Object.values(st.failed).reduce((a, b) => a + b, 0);
    expect(failed).toBe(700);
    expect(st.accepted).toBe(700);
    console.log(`heap growth over 600 bad connections: ${(grown / 1024).toFixed(0)} KiB`);
    expect(grown).toBeLessThan(4 * 1024 * 1024);
    const r = await makeClient(new StaticIdentity(pki.bundles).add(web)).authenticate(request(s.port));
    expect(r.remoteId).toBe(DB);
  }, 120_000);

  it('close() is idempotent and ends open connections', async () => {
    const s = await server(new StaticIdentity(pki.bundles).add(db), [DB], {
      limits: { handshakeTimeoutMs: 60_000 },
    });
    const pending = rawConnection(s.port, () => {});
    await until(() => s.server.stats().active === 1);
    await Promise.all([s.server.close(), s.server.close()]);
    await s.server.close();
    const r = await pending;
    expect(r.closedAfterMs).toBeLessThan(1000);
    expect(s.server.stats().active).toBe(0);
  });
});

describe('verified-chain cache', () => {
  it('a repeated chain is answered from the cache; a bundle change or expiry is not', async () => {
    const serverVerifier = new X509SvidVerifier();
    const clientVerifier = new X509SvidVerifier();
    const serverClock: { nowMs?: number } = {};
    const serverIdentity = new StaticIdentity(pki.bundles).add(db);
    const s = await server(serverIdentity, [DB], {
      verifier: serverVerifier,
      now: () => serverClock.nowMs ?? Date.now(),
    });
    const clientIdentity = new StaticIdentity(pki.bundles).add(web);
    const client = makeClient(clientIdentity, { verifier: clientVerifier });
    await client.authenticate(request(s.port));
    await client.authenticate(request(s.port));
    await until(() => s.authenticated.length === 2);
    expect(serverVerifier.stats()).toMatchObject({ hits: 1, misses: 1 });
    expect(clientVerifier.stats()).toMatchObject({ hits: 1, misses: 1 });

    // The server's bundle no longer holds the authority of the client's (cached) chain.
    serverIdentity.trust = rogue.bundles;
    const refused = await failure(client.authenticate(request(s.port)));
    expect(refused.reason).toBe('peer-rejected');
    expect(refused.details['peerReason']).toBe('svid-untrusted');
    serverIdentity.trust = pki.bundles;

    // The client's bundle changed the same way: the server's cached chain is refused too.
    clientIdentity.trust = rogue.bundles;
    expect((await failure(client.authenticate(request(s.port)))).reason).toBe('svid-untrusted');
    clientIdentity.trust = pki.bundles;

    // At a time past the client SVID's notAfter, the server refuses the chain it verified before.
    serverClock.nowMs = web.notAfter.getTime() + 1000;
    const expired = await failure(client.authenticate(request(s.port)));
    expect(expired.details['peerReason']).toBe('svid-expired');
    expect(s.authenticated).toHaveLength(2);
  });
});
