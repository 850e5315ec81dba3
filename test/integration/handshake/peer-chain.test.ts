import { X509Certificate } from 'node:crypto';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Svid } from '../../../src/spiffe/index.js';
import { peerChainDer } from '../../../src/tls/index.js';
import { makeClient, NODE_B, startServer, StaticIdentity } from './harness.js';
import { newPki, type TestPki } from './pki.js';

const WEB = 'spiffe://chain.local/ns/a/sa/web';
const DB = 'spiffe://chain.local/ns/b/sa/db';

let pki: TestPki;
let web: Svid;
let db: Svid;
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of closers) await c();
});

beforeAll(async () => {
  pki = await newPki('chain.local', { intermediate: true });
  // Leaves outlive the intermediate (12 h): the chain's earliest notAfter is the intermediate's.
  web = await pki.issue(WEB, { ttlMs: 20 * 3_600_000 });
  db = await pki.issue(DB, { ttlMs: 20 * 3_600_000 });
});

/** What code other than peerChainDer may have done to the socket first. */
type Before = 'nothing' | 'legacy' | 'chain-then-both';
function touch(s: TLSSocket, before: Before): void {
  if (before === 'legacy') s.getPeerCertificate(true);
  if (before === 'chain-then-both') {
    peerChainDer(s);
    s.getPeerX509Certificate();
    s.getPeerCertificate(true);
    s.getPeerX509Certificate();
  }
}

/** A raw TLS 1.3 pair; returns the chains each side extracted from the other. */
async function exchange(
  serverPem: string,
  serverKey: string,
  clientPem: string,
  clientKey: string,
  before: Before = 'nothing',
) {
  let serverSaw: Buffer[] = [];
  const server = createServer({
    cert: serverPem,
    key: serverKey,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
    ca: [],
  });
  const seen = new Promise<void>((resolve) =>
    server.on('secureConnection', (s: TLSSocket) => {
      touch(s, before);
      serverSaw = peerChainDer(s);
      s.end();
      resolve();
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(r)));
  const port = (server.address() as { port: number }).port;
  const clientSaw = await new Promise<Buffer[]>((resolve, reject) => {
    const c = connect({
      host: '127.0.0.1',
      port,
      cert: clientPem,
      key: clientKey,
      rejectUnauthorized: false,
      ca: [],
      minVersion: 'TLSv1.3',
    });
    c.on('secureConnect', () => {
      touch(c, before);
      const chain = peerChainDer(c);
      c.end();
      resolve(chain);
    });
    c.on('error', reject);
  });
  await seen;
  return { serverSaw, clientSaw };
}

describe('peer chain extraction', () => {
  it('returns the leaf first, then the presented intermediate, on both sides', async () => {
    const { serverSaw, clientSaw } = await exchange(db.chainPem, db.keyPem, web.chainPem, web.keyPem);
    expect(clientSaw.map((c) => c.toString('hex'))).toEqual(db.chainDer.map((c) => c.toString('hex')));
    expect(serverSaw.map((c) => c.toString('hex'))).toEqual(web.chainDer.map((c) => c.toString('hex')));
    expect(clientSaw).toHaveLength(2);
  });

  it.each(['legacy', 'chain-then-both'] as const)(
    'does not depend on the order of peer certificate reads (%s)',
    async (before) => {
      const { serverSaw, clientSaw } = await exchange(
        db.chainPem,
        db.keyPem,
        web.chainPem,
        web.keyPem,
        before,
      );
      expect(clientSaw.map((c) => c.toString('hex'))).toEqual(db.chainDer.map((c) => c.toString('hex')));
      expect(serverSaw.map((c) => c.toString('hex'))).toEqual(web.chainDer.map((c) => c.toString('hex')));
    },
  );

  it('includes a presented root once and stops at the self-signed certificate', async () => {
    const root = new X509Certificate(pki.bundles.get('chain.local')![0]!);
    const { clientSaw } = await exchange(db.chainPem + root.toString(), db.keyPem, web.chainPem, web.keyPem);
    expect(clientSaw).toHaveLength(3);
    expect(clientSaw[0]!.equals(db.chainDer[0]!)).toBe(true);
    expect(clientSaw[2]!.equals(root.raw)).toBe(true);
  });

  it('a handshake over intermediate chains takes the intermediate notAfter as expiry on both sides', async () => {
    const day = 24 * 3_600_000;
    const s = await startServer(new StaticIdentity(pki.bundles).add(db), [DB], { maxEntryTtlMs: day });
    closers.push(() => s.server.close());
    const r = await makeClient(new StaticIdentity(pki.bundles).add(web), { maxEntryTtlMs: day }).authenticate(
      {
        peerNode: NODE_B,
        peerAddress: '127.0.0.1',
        peerPort: s.port,
        localId: WEB,
        remoteId: DB,
      },
    );
    const interNotAfter = Date.parse(new X509Certificate(db.chainDer[1]!).validTo);
    expect(interNotAfter).toBeLessThan(db.notAfter.getTime());
    expect(r.expiresAtMs).toBe(interNotAfter);
    expect(s.authenticated[0]!.expiresAtMs).toBe(interNotAfter);
    expect(r.peerSerials).toHaveLength(2);
  });
});
