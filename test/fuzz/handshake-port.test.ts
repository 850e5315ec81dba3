/**
 * Fuzz target: raw bytes on the handshake port. A real HandshakeServer on 127.0.0.1 gets, per
 * input, one connection carrying either mutated bytes before TLS (a captured ClientHello, HTTP,
 * TLS records, oversized lengths, written in random chunks) or, inside a TLS session with a valid
 * client SVID, mutated and random handshake frames. Invariants: the server closes every connection
 * within its handshake deadline (no hang), counts every failure under a known reason, returns to
 * zero active connections, and authenticates only a hello that is valid for the certificate that
 * was presented (right IDs and nodes): no entry without a verified handshake.
 */
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeFrame,
  isHandshakeReason,
  parseHello,
  PROTOCOL_VERSION,
  type HelloMessage,
} from '../../src/auth/handshake/index.js';
import type { Svid } from '../../src/spiffe/index.js';
import { MESHAUTH_ALPN, sniForSpiffeId } from '../../src/tls/index.js';
import {
  NODE_A,
  NODE_B,
  startServer,
  StaticIdentity,
  until,
  type ServerFixture,
} from '../integration/handshake/harness.js';
import { newPki } from '../integration/handshake/pki.js';
import { applyOps, byteOp, corpus, fc, fuzzAsync, mutatedBytes, timeoutFor } from './harness.js';

const TARGET = 'handshake-port';
const CI_SECONDS = 4;
const WEB = 'spiffe://demo.local/ns/a/sa/web';
const DB = 'spiffe://demo.local/ns/b/sa/db';
const DEADLINE_MS = 400;
/** A connection the server has not closed by then is a hang. */
const HANG_MS = DEADLINE_MS + 3000;

let web: Svid;
let db: Svid;
let s: ServerFixture;
let clientHello: Buffer;

/** The first flight of a real meshauth TLS client, captured on a plain TCP listener. */
async function captureClientHello(): Promise<Buffer> {
  const srv = createNetServer();
  const got = new Promise<Buffer>((resolve) =>
    srv.once('connection', (c) => c.once('data', (d: Buffer) => (c.destroy(), resolve(d)))),
  );
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const c = tlsConnect({
    host: '127.0.0.1',
    port,
    servername: sniForSpiffeId(DB),
    ALPNProtocols: [MESHAUTH_ALPN],
    rejectUnauthorized: false,
  });
  c.on('error', () => {});
  const hello = await got;
  c.destroy();
  srv.close();
  return hello;
}

function chunks(data: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  let i = 0;
  while (p < data.length) {
    const n = cuts[i++ % cuts.length]!;
    out.push(data.subarray(p, p + n));
    p += n;
  }
  return out;
}

/** Writes the chunks (half-closing after them when `endAfter`), then waits for the server to close. */
function rawConnection(parts: Buffer[], endAfter: boolean): Promise<'closed' | 'hang'> {
  return new Promise((resolve) => {
    const sock = netConnect(s.port, '127.0.0.1', () => {
      for (const p of parts) sock.write(p);
      if (endAfter) sock.end();
    });
    const t = setTimeout(() => (sock.destroy(), resolve('hang')), HANG_MS);
    // Read what the server sends (TLS alerts): a paused socket would never see the server's FIN.
    sock.on('data', () => {});
    sock.on('error', () => {});
    sock.on('close', () => (clearTimeout(t), resolve('closed')));
  });
}

function tlsConnection(parts: Buffer[], endAfter: boolean): Promise<'closed' | 'hang' | 'no-tls'> {
  return new Promise((resolve) => {
    let secure = false;
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
    const t = setTimeout(() => (c.destroy(), resolve('hang')), HANG_MS);
    c.on('secureConnect', () => {
      secure = true;
      for (const p of parts) c.write(p);
      if (endAfter) c.end();
    });
    c.on('data', () => {});
    c.on('error', () => {});
    c.on('close', () => (clearTimeout(t), resolve(secure ? 'closed' : 'no-tls')));
  });
}

/**
 * What the server must do with a stream sent inside TLS from the WEB certificate: authenticate it
 * when it is exactly one hello valid for that certificate; possibly (depending on how the bytes
 * arrive) when such a hello is followed by more bytes, which the server may read before or after
 * it decided; never otherwise.
 */
function expectedFor(stream: Buffer): 'must' | 'may' | 'never' {
  if (stream.length < 4) return 'never';
  const len = stream.readUInt32BE(0);
  if (len === 0 || len > 16 * 1024 || stream.length < 4 + len) return 'never';
  let h: HelloMessage;
  try {
    h = parseHello(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(stream.subarray(4, 4 + len))));
  } catch {
    return 'never';
  }
  if (h.clientId !== WEB || h.serverId !== DB || h.clientNode !== NODE_A || h.serverNode !== NODE_B)
    return 'never';
  return stream.length === 4 + len ? 'must' : 'may';
}

const helloFields = fc.record({
  v: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.constantFrom(1, 3, '2')),
  clientNode: fc.constantFrom(NODE_A, NODE_B, 'node-x', ''),
  serverNode: fc.constantFrom(NODE_B, NODE_A),
  clientId: fc.constantFrom(WEB, DB, 'spiffe://demo.local/ns/a/sa/other', 'spiffe://evil.test/ns/a/sa/web'),
  serverId: fc.constantFrom(DB, WEB),
});

describe('fuzz: the handshake port', () => {
  beforeAll(async () => {
    const pki = await newPki('demo.local');
    web = await pki.issue(WEB, { ttlMs: 3_600_000 });
    db = await pki.issue(DB, { ttlMs: 3_600_000 });
    s = await startServer(new StaticIdentity(pki.bundles).add(db), [DB], {
      limits: {
        handshakeTimeoutMs: DEADLINE_MS,
        perPeerRatePerSec: 1e6,
        perPeerBurst: 1e6,
        maxConnections: 64,
      },
    });
    clientHello = await captureClientHello();
  });

  afterAll(async () => {
    await s?.server.close();
  });

  it('a TLS record header announcing too much data is answered with an alert and closed at once', async () => {
    const data = corpus(TARGET).find((f) => f.name === 'tls-record-too-long')!.data;
    for (const end of [false, true]) {
      const started = Date.now();
      expect(await rawConnection([data], end)).toBe('closed');
      expect(Date.now() - started).toBeLessThan(DEADLINE_MS);
    }
    await until(() => s.server.stats().active === 0, 2000, 'no active connections');
  });

  it(
    'garbage, truncated and oversized input before and inside TLS: closed in time, no unearned entry',
    async () => {
      const seedBytes = [clientHello, ...corpus(TARGET).map((f) => f.data)];
      const validHello = encodeFrame({
        v: PROTOCOL_VERSION,
        clientNode: NODE_A,
        serverNode: NODE_B,
        clientId: WEB,
        serverId: DB,
      });
      const input = fc.oneof(
        fc.record({
          tls: fc.constant(false),
          data: fc.oneof(
            mutatedBytes(seedBytes, 4),
            fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u)),
          ),
          cuts: fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 4 }),
          end: fc.boolean(),
        }),
        fc.record({
          tls: fc.constant(true),
          data: fc.oneof(
            helloFields.map((h) => encodeFrame(h)),
            fc
              .tuple(fc.constant(validHello), fc.array(byteOp, { minLength: 1, maxLength: 3 }))
              .map(([b, ops]) => applyOps(b, ops)),
            fc.constantFrom(
              validHello,
              Buffer.concat([validHello, validHello]),
              Buffer.from([0, 0, 0x40, 1]),
              Buffer.from([0xff, 0xff, 0xff, 0xff]),
            ),
            fc.uint8Array({ maxLength: 256 }).map((u) => Buffer.from(u)),
          ),
          cuts: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 4 }),
          end: fc.boolean(),
        }),
      );
      let authenticated = 0;
      await fuzzAsync(
        TARGET,
        CI_SECONDS,
        input,
        async ({ tls, data, cuts, end }) => {
          const before = s.authenticated.length;
          const outcome = tls
            ? await tlsConnection(chunks(data, cuts), end)
            : await rawConnection(chunks(data, cuts), end);
          expect(outcome, `input ${data.toString('hex')}`).not.toBe('hang');
          if (outcome === 'no-tls') expect(tls).toBe(true);
          const expected = tls && outcome === 'closed' ? expectedFor(data) : 'never';
          const ctx = `input ${data.toString('hex')} cuts ${cuts.join(',')}`;
          if (expected === 'must')
            await until(() => s.authenticated.length > before, 2000, 'the authenticated report');
          const got = s.authenticated.length - before;
          if (expected === 'never') expect(got, ctx).toBe(0);
          else if (expected === 'must') expect(got, ctx).toBe(1);
          else expect(got, ctx).toBeLessThanOrEqual(1);
          authenticated += got;
          for (const a of s.authenticated.slice(before))
            expect(a).toMatchObject({ localId: DB, remoteId: WEB, peerNode: NODE_A });
        },
        // A connection that waits out the handshake deadline takes 0.4 s: few inputs per second.
        10,
      );
      await until(() => s.server.stats().active === 0, 5000, 'no active connections');
      expect(s.authenticated).toHaveLength(authenticated);
      for (const [reason] of Object.entries(s.server.stats().failed))
        expect(isHandshakeReason(reason), reason).toBe(true);
      for (const f of s.failures) expect(isHandshakeReason(f.reason), f.reason).toBe(true);
    },
    timeoutFor(CI_SECONDS, 60_000),
  );
});
