import { createHmac, generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AuthenticatorError,
  authenticatorRequestContext,
  createAuthenticator,
  decodeRequest,
  encodeRequest,
  HANDSHAKE_TYPE,
  SIGNATURE_SCHEME,
  verifyAuthenticator,
  type AuthenticatorConnection,
} from '../../../../src/auth/channel/index.js';
import type { Svid } from '../../../../src/spiffe/index.js';
import { newPki } from '../../../integration/handshake/pki.js';

/** A connection whose exporter is HMAC(secret, label): two fakes with one secret are one connection. */
function fakeConn(
  secret: string,
  hash: 'sha256' | 'sha384' = 'sha256',
): AuthenticatorConnection & { labels: string[] } {
  const labels: string[] = [];
  return {
    hash,
    labels,
    exportKeyingMaterial(length, label) {
      labels.push(label);
      return createHmac('sha512', secret).update(label).digest().subarray(0, length);
    },
  };
}

let svid: Svid;
beforeAll(async () => {
  svid = await (await newPki('demo.local', { intermediate: true })).issue('spiffe://demo.local/ns/a/sa/web');
});

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AuthenticatorError);
    return (err as AuthenticatorError).reason;
  }
  throw new Error('expected an AuthenticatorError');
}

describe('RFC 9261 exported authenticators', () => {
  it('encodes a CertificateRequest / ClientCertificateRequest per RFC 8446 §4.3.2 and reads it back', () => {
    const ctx = Buffer.alloc(16, 7);
    const server = encodeRequest('server', ctx);
    expect(server.raw[0]).toBe(HANDSHAKE_TYPE.certificateRequest);
    expect(server.raw.readUIntBE(1, 3)).toBe(server.raw.length - 4);
    expect(server.raw[4]).toBe(16); // context length
    const client = encodeRequest('client', ctx);
    expect(client.raw[0]).toBe(HANDSHAKE_TYPE.clientCertificateRequest);
    const back = decodeRequest('server', server.raw);
    expect(back.context).toEqual(ctx);
    expect(back.schemes).toContain(SIGNATURE_SCHEME.ecdsa_secp256r1_sha256);
    // A request of the wrong role, truncated or with trailing bytes is malformed.
    expect(reason(() => decodeRequest('client', server.raw))).toBe('proof-malformed');
    expect(reason(() => decodeRequest('server', server.raw.subarray(0, 10)))).toBe('proof-malformed');
    expect(reason(() => decodeRequest('server', Buffer.concat([server.raw, Buffer.from([0])])))).toBe(
      'proof-malformed',
    );
  });

  it("creates Certificate || CertificateVerify || Finished with the creator role's exporter labels, and verifies it", () => {
    const conn = fakeConn('one');
    const req = encodeRequest('server', Buffer.alloc(16, 1));
    const a = createAuthenticator({
      conn,
      creator: 'client',
      request: req,
      chainDer: svid.chainDer,
      key: svid.key,
    });
    expect(conn.labels).toEqual([
      'EXPORTER-client authenticator handshake context',
      'EXPORTER-client authenticator finished key',
    ]);
    expect(a[0]).toBe(HANDSHAKE_TYPE.certificate);
    expect(authenticatorRequestContext(a)).toEqual(req.context);
    const v = verifyAuthenticator(fakeConn('one'), 'client', req, a);
    expect(v.chainDer).toEqual(svid.chainDer);
    expect(v.leaf.serialNumber).toBe(svid.leaf.serialNumber);
  });

  it('refuses it on another connection, for another request, reflected to its creator, or altered', () => {
    const req = encodeRequest('server', Buffer.alloc(16, 1));
    const a = createAuthenticator({
      conn: fakeConn('one'),
      creator: 'client',
      request: req,
      chainDer: svid.chainDer,
      key: svid.key,
    });
    // Other exporter secrets: the signed transcript differs.
    expect(reason(() => verifyAuthenticator(fakeConn('two'), 'client', req, a))).toBe(
      'proof-signature-invalid',
    );
    // As if the server had made it: other labels.
    expect(reason(() => verifyAuthenticator(fakeConn('one'), 'server', req, a))).toBe(
      'proof-signature-invalid',
    );
    // Another request with the same context but other bytes (schemes) is another transcript too.
    const other = encodeRequest('server', Buffer.alloc(16, 2));
    expect(reason(() => verifyAuthenticator(fakeConn('one'), 'client', other, a))).toBe(
      'proof-context-mismatch',
    );
    // The Finished MAC covers everything: flip its last byte.
    const bad = Buffer.from(a);
    bad[bad.length - 1]! ^= 1;
    expect(reason(() => verifyAuthenticator(fakeConn('one'), 'client', req, bad))).toBe(
      'proof-finished-invalid',
    );
    // Truncations anywhere are malformed, never a crash.
    for (let n = 0; n < a.length; n += 97) {
      expect(reason(() => verifyAuthenticator(fakeConn('one'), 'client', req, a.subarray(0, n)))).toMatch(
        /^proof-/,
      );
    }
  });

  it('signs with Ed25519 and RSA-PSS keys too, and refuses a scheme the request did not offer', () => {
    const req = encodeRequest('client', Buffer.alloc(16, 3));
    for (const type of ['ed25519', 'rsa'] as const) {
      const { privateKey } =
        type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
      // Certificate contents are not checked here (chain validation is the caller's), only the signature.
      const a = createAuthenticator({
        conn: fakeConn('x'),
        creator: 'server',
        request: req,
        chainDer: svid.chainDer,
        key: privateKey,
      });
      // The leaf's key is P-256, so the signature of another key fails; structure is sound.
      expect(reason(() => verifyAuthenticator(fakeConn('x'), 'server', req, a))).toBe(
        'proof-signature-invalid',
      );
    }
    const narrow = { ...req, schemes: [SIGNATURE_SCHEME.ed25519] };
    expect(
      reason(() =>
        createAuthenticator({
          conn: fakeConn('x'),
          creator: 'server',
          request: narrow,
          chainDer: svid.chainDer,
          key: svid.key,
        }),
      ),
    ).toBe('proof-unsupported-key');
  });

  it('uses SHA-384 transcripts on a SHA-384 cipher suite', () => {
    const req = encodeRequest('server', Buffer.alloc(16, 4));
    const a = createAuthenticator({
      conn: fakeConn('s', 'sha384'),
      creator: 'client',
      request: req,
      chainDer: svid.chainDer,
      key: svid.key,
    });
    expect(a.subarray(a.length - 48 - 4)[0]).toBe(HANDSHAKE_TYPE.finished);
    expect(() => verifyAuthenticator(fakeConn('s', 'sha384'), 'client', req, a)).not.toThrow();
    expect(reason(() => verifyAuthenticator(fakeConn('s', 'sha256'), 'client', req, a))).toMatch(/^proof-/);
  });
});
