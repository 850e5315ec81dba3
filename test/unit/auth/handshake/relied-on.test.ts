import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HandshakeError } from '../../../../src/auth/handshake/errors.js';
import { reliedOnTrust } from '../../../../src/auth/handshake/relied-on.js';
import { verifyPeerChain } from '../../../../src/auth/handshake/verify-peer.js';
import { DevCa } from '../../../../src/identity/dev-ca.js';

const TD = 'demo.local';
const OWN = `spiffe://${TD}/ns/demo/sa/web`;
const PEER = `spiffe://${TD}/ns/demo/sa/db`;
const fp = (der: Buffer): string => new X509Certificate(der).fingerprint256;

describe('reliedOnTrust', () => {
  it('records both chains while both reach the bundle, and fails closed (bundle-revoked) once our authority left it', async () => {
    const [a1, a2, b] = await Promise.all([DevCa.create(TD), DevCa.create(TD), DevCa.create(TD)]);
    const own = await a1.issue(OWN, { ttlMs: 600_000 });
    const peer = await b.issue(PEER, { ttlMs: 600_000 });
    const before = new Map([[TD, [a1.caDer, a2.caDer, b.caDer]]]);
    const verified = verifyPeerChain(peer.chainDer, before, PEER, new Date());
    const r = reliedOnTrust(verified, own.chainDer, OWN, before);
    expect(r.trust.chains.map((c) => c.anchors)).toEqual([[fp(b.caDer)], [fp(a1.caDer)]]);

    // A1 left the bundle while our SVID of A1 is still held: no trust to record, no entry.
    const after = new Map([[TD, [a2.caDer, b.caDer]]]);
    let err: unknown;
    try {
      reliedOnTrust(verifyPeerChain(peer.chainDer, after, PEER, new Date()), own.chainDer, OWN, after);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as HandshakeError).reason).toBe('bundle-revoked');
  });
});
