import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BundleError,
  SpiffeIdError,
  formatJwksBundle,
  parseBundle,
  parseJwksBundle,
  toPem,
  verifyX509Svid,
} from '../../../src/spiffe/index.js';
import { makeLeaf, makeRootCa, pemOf, withGarbledPublicKey, type TestCert } from '../../helpers/certs.js';

const TD = 'example.org';

let ca1: TestCert;
let ca2: TestCert;
let leaf: TestCert;

beforeAll(async () => {
  ca1 = await makeRootCa(TD);
  ca2 = await makeRootCa(TD);
  leaf = await makeLeaf(ca1, 'spiffe://example.org/ns/a/sa/b');
});

function bundleError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).code).toBe('MESHAUTH_ERR_BUNDLE');
    return (err as Error).message;
  }
  throw new Error('expected a BundleError');
}

function jwks(keys: unknown[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ keys, ...extra });
}

function x509Entry(c: TestCert, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { use: 'x509-svid', kty: 'EC', x5c: [c.der.toString('base64')], ...extra };
}

describe('parseBundle: PEM and DER', () => {
  it('reads every certificate of a PEM bundle, in order', () => {
    const b = parseBundle(pemOf(ca1, ca2), TD);
    expect(b.trustDomain).toBe(TD);
    expect(b.x509Authorities).toEqual([ca1.der, ca2.der]);
    expect(parseBundle(Buffer.from(pemOf(ca2)), TD).x509Authorities).toEqual([ca2.der]);
  });

  it('reads concatenated DER', () => {
    expect(parseBundle(Buffer.concat([ca1.der, ca2.der]), TD).x509Authorities).toEqual([ca1.der, ca2.der]);
  });

  it('accepts the trust domain as a name or as spiffe://<td>, and refuses an invalid one', () => {
    expect(parseBundle(pemOf(ca1), 'spiffe://example.org').trustDomain).toBe(TD);
    expect(() => parseBundle(pemOf(ca1), 'Example.org')).toThrow(SpiffeIdError);
    expect(() => parseJwksBundle(jwks([x509Entry(ca1)]), 'spiffe://example.org/x')).toThrow(SpiffeIdError);
  });

  it('rejects a bundle with zero authorities', () => {
    expect(bundleError(() => parseBundle(Buffer.alloc(0), TD))).toBe(
      'parse bundle for "example.org": empty input',
    );
    expect(
      bundleError(() => parseBundle('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', TD)),
    ).toBe('parse bundle for "example.org": no CERTIFICATE block in PEM input');
  });

  it('rejects an authority that is not a CA certificate', () => {
    expect(bundleError(() => parseBundle(pemOf(ca1, leaf), TD))).toBe(
      'parse bundle: authority 1 of "example.org" is not a CA certificate',
    );
    expect(bundleError(() => parseBundle(leaf.der, TD))).toContain(
      'authority 0 of "example.org" is not a CA certificate',
    );
  });

  it('rejects an authority whose public key cannot be parsed, in PEM, DER and JWKS', () => {
    const bad = withGarbledPublicKey(ca2.der);
    const unusable = / has an unusable public key: the SubjectPublicKeyInfo does not parse as a key: \S/;
    expect(bundleError(() => parseBundle(toPem([ca1.der, bad]), TD))).toMatch(
      new RegExp(`^parse bundle: authority 1 of "example\\.org"${unusable.source}`),
    );
    expect(bundleError(() => parseBundle(Buffer.concat([bad, ca1.der]), TD))).toMatch(
      new RegExp(`^parse bundle: authority 0 of "example\\.org"${unusable.source}`),
    );
    const doc = jwks([{ use: 'x509-svid', kty: 'EC', x5c: [bad.toString('base64')] }]);
    expect(bundleError(() => parseJwksBundle(doc, TD))).toMatch(
      new RegExp(`authority 0 of "example\\.org"${unusable.source}`),
    );
  });

  it('rejects malformed certificates', () => {
    expect(
      bundleError(() => parseBundle('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', TD)),
    ).toMatch(/^parse bundle: authority 0 of "example.org" is not a valid certificate: /);
    expect(bundleError(() => parseBundle(Buffer.from('garbage bytes'), TD))).toMatch(
      /^parse bundle for "example.org": /,
    );
    expect(bundleError(() => parseBundle(ca1.der.subarray(0, 100), TD))).toMatch(
      /^parse bundle for "example.org": /,
    );
  });
});

describe('JWKS bundles', () => {
  it('round-trips through formatJwksBundle and parseJwksBundle with sequence and refresh hint', () => {
    const text = formatJwksBundle({
      trustDomain: TD,
      x509Authorities: [ca1.der, ca2.der],
      sequence: 7,
      refreshHintSeconds: 300,
    });
    const doc = JSON.parse(text) as {
      keys: Array<Record<string, unknown>>;
      spiffe_sequence: number;
      spiffe_refresh_hint: number;
    };
    expect(doc.spiffe_sequence).toBe(7);
    expect(doc.spiffe_refresh_hint).toBe(300);
    expect(doc.keys).toHaveLength(2);
    for (const [i, k] of doc.keys.entries()) {
      expect(k.use).toBe('x509-svid');
      expect(k.kid).toBeUndefined();
      // JWK key parameters are present and match the certificate
      expect(k).toMatchObject({ kty: 'EC', crv: 'P-256' });
      const der = [ca1, ca2][i]!.der;
      const jwk = new X509Certificate(der).publicKey.export({ format: 'jwk' });
      expect(k.x).toBe(jwk.x);
      expect(k.y).toBe(jwk.y);
      expect(k.x5c).toEqual([der.toString('base64')]);
    }
    const back = parseJwksBundle(text, TD);
    expect(back).toEqual({
      trustDomain: TD,
      x509Authorities: [ca1.der, ca2.der],
      sequence: 7,
      refreshHintSeconds: 300,
    });
    // parseBundle recognises the JSON form too
    expect(parseBundle(text, TD)).toEqual(back);
    expect(parseBundle(Buffer.from(`\n  ${text}`), TD).x509Authorities).toEqual([ca1.der, ca2.der]);
  });

  it('writes a bundle without optional members when they are absent', () => {
    const doc = JSON.parse(formatJwksBundle({ trustDomain: TD, x509Authorities: [ca1.der] })) as Record<
      string,
      unknown
    >;
    expect(Object.keys(doc)).toEqual(['keys']);
    expect(parseJwksBundle(JSON.stringify(doc), TD)).toEqual({ trustDomain: TD, x509Authorities: [ca1.der] });
  });

  it('PEM → JWKS → PEM keeps the authorities, and a leaf verifies against either form', () => {
    const fromPem = parseBundle(pemOf(ca1, ca2), TD);
    const fromJwks = parseBundle(formatJwksBundle(fromPem), TD);
    expect(toPem(fromJwks.x509Authorities)).toBe(toPem(fromPem.x509Authorities));
    const v = verifyX509Svid([leaf.der], new Map([[TD, fromJwks.x509Authorities]]));
    expect(v.spiffeId.toString()).toBe('spiffe://example.org/ns/a/sa/b');
  });

  it('rejects zero authorities: empty keys, or only entries of other uses', () => {
    expect(bundleError(() => parseJwksBundle(jwks([]), TD))).toBe(
      'parse JWKS bundle for "example.org": bundle for "example.org" has no X.509 authorities',
    );
    expect(
      bundleError(() =>
        parseJwksBundle(
          jwks([{ use: 'jwt-svid', kty: 'EC', kid: 'k1', crv: 'P-256', x: 'AA', y: 'AA' }]),
          TD,
        ),
      ),
    ).toContain('has no X.509 authorities');
  });

  it('ignores entries with an unknown or missing use', () => {
    const b = parseJwksBundle(
      jwks([
        { use: 'jwt-svid', kty: 'EC', kid: 'abc', crv: 'P-256', x: 'AA', y: 'AA' },
        { use: 'something-else', x5c: ['not base64 !'] },
        { kty: 'EC', x5c: [ca2.der.toString('base64')] },
        x509Entry(ca1),
      ]),
      TD,
    );
    expect(b.x509Authorities).toEqual([ca1.der]);
  });

  it('rejects kid on an x509-svid entry', () => {
    expect(bundleError(() => parseJwksBundle(jwks([x509Entry(ca1, { kid: 'k1' })]), TD))).toBe(
      'parse JWKS bundle for "example.org": keys[0] is an x509-svid entry and must not have "kid"',
    );
  });

  it('rejects an x509-svid entry without exactly one standard-base64 certificate', () => {
    const b64 = ca1.der.toString('base64');
    for (const x5c of [undefined, [], [b64, b64], [42], 'abc']) {
      expect(bundleError(() => parseJwksBundle(jwks([x509Entry(ca1, { x5c })]), TD))).toBe(
        'parse JWKS bundle for "example.org": keys[0].x5c must hold exactly one certificate',
      );
    }
    const url = ca1.der.toString('base64url');
    expect(url).toMatch(/[-_]/);
    expect(bundleError(() => parseJwksBundle(jwks([x509Entry(ca1, { x5c: [url] })]), TD))).toContain(
      'keys[0].x5c[0] is not standard base64',
    );
  });

  it('rejects a non-CA or malformed certificate in x5c', () => {
    expect(bundleError(() => parseJwksBundle(jwks([x509Entry(leaf)]), TD))).toContain(
      'authority 0 of "example.org" is not a CA certificate',
    );
    expect(bundleError(() => parseJwksBundle(jwks([x509Entry(ca1, { x5c: ['AAAA'] })]), TD))).toContain(
      'is not a valid certificate',
    );
  });

  it('rejects key parameters that contradict the certificate', () => {
    const other = JSON.parse(formatJwksBundle({ trustDomain: TD, x509Authorities: [ca2.der] })) as {
      keys: Array<Record<string, unknown>>;
    };
    const mixed = { ...other.keys[0], x5c: [ca1.der.toString('base64')] };
    expect(bundleError(() => parseJwksBundle(jwks([mixed]), TD))).toBe(
      'parse JWKS bundle for "example.org": keys[0] "x" does not match the public key of its x5c certificate',
    );
    expect(bundleError(() => parseJwksBundle(jwks([x509Entry(ca1, { kty: 'RSA' })]), TD))).toContain(
      '"kty" does not match',
    );
  });

  it('rejects documents that are not JWK sets', () => {
    expect(bundleError(() => parseJwksBundle('{', TD))).toMatch(
      /^parse JWKS bundle for "example.org": not JSON: /,
    );
    for (const doc of ['{}', '{"keys": {}}', '[]', 'null', '{"keys": "x"}']) {
      expect(bundleError(() => parseJwksBundle(doc, TD))).toBe(
        'parse JWKS bundle for "example.org": "keys" must be an array',
      );
    }
    expect(bundleError(() => parseJwksBundle(jwks([null]), TD))).toBe(
      'parse JWKS bundle for "example.org": keys[0] is not an object',
    );
  });

  it('validates spiffe_sequence and spiffe_refresh_hint', () => {
    for (const seq of [-1, 1.5, '3']) {
      expect(
        bundleError(() => parseJwksBundle(jwks([x509Entry(ca1)], { spiffe_sequence: seq }), TD)),
      ).toContain('spiffe_sequence must be a non-negative integer');
    }
    for (const hint of [-5, '300', null]) {
      expect(
        bundleError(() => parseJwksBundle(jwks([x509Entry(ca1)], { spiffe_refresh_hint: hint }), TD)),
      ).toContain('spiffe_refresh_hint must be a non-negative number');
    }
  });
});
