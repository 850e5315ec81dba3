/**
 * Fuzz target: trust bundles (PEM, concatenated DER, SPIFFE JWKS; SPIFFE Trust Domain and Bundle
 * §4) through parseBundle. Invariants: only BundleError; every authority of an accepted bundle is
 * a certificate OpenSSL parses as a CA; an accepted bundle survives formatJwksBundle and back
 * unchanged; JWKS metadata is a non-negative integer sequence and a non-negative refresh hint.
 */
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { formatJwksBundle, parseBundle, parseJwksBundle, type X509Bundle } from '../../src/spiffe/index.js';
import { corpus, fc, fuzzSync, mutatedBytes, mutatedDer, seeds, timeoutFor, typedOnly } from './harness.js';

const TARGET = 'trust-bundle';
const CI_SECONDS = 3;
const TD = 'demo.local';

function check(data: Buffer): void {
  const r = typedOnly(['MESHAUTH_ERR_BUNDLE'], () => parseBundle(data, TD));
  if (!r.ok) return;
  const b: X509Bundle = r.value;
  expect(b.trustDomain).toBe(TD);
  expect(b.x509Authorities.length).toBeGreaterThan(0);
  for (const der of b.x509Authorities) expect(new X509Certificate(der).ca).toBe(true);
  if (b.sequence !== undefined) expect(Number.isSafeInteger(b.sequence) && b.sequence >= 0).toBe(true);
  if (b.refreshHintSeconds !== undefined) expect(b.refreshHintSeconds >= 0).toBe(true);
  const again = parseJwksBundle(formatJwksBundle(b), TD);
  expect(again.x509Authorities.map((d) => d.toString('hex'))).toEqual(
    b.x509Authorities.map((d) => d.toString('hex')),
  );
}

describe('fuzz: trust bundles', () => {
  it('corpus: PEM, DER and JWKS forms parse to their authorities', () => {
    const byName = new Map(corpus(TARGET).map((f) => [f.name, f.data]));
    expect(parseBundle(byName.get('root.pem')!, TD).x509Authorities).toHaveLength(1);
    expect(parseBundle(byName.get('roots.der')!, TD).x509Authorities).toHaveLength(2);
    const jwks = parseBundle(byName.get('bundle.jwks.json')!, TD);
    expect(jwks).toMatchObject({ sequence: 3, refreshHintSeconds: 300 });
    for (const f of corpus(TARGET)) check(f.data);
  });

  it('regression: a CA whose key is on an unknown curve is refused, not accepted then unusable', () => {
    // Found by this target: one flipped byte in the curve OID of the root; the certificate still
    // parsed, so the bundle was accepted and formatJwksBundle later threw an untyped OpenSSL error.
    const input = corpus(TARGET).find((f) => f.name === 'finding-unknown-curve.jwks.json')!.data;
    expect(() => parseBundle(input, TD)).toThrow(/authority 0 of "demo.local" has an unusable public key/);
    const r = typedOnly(['MESHAUTH_ERR_BUNDLE'], () => parseBundle(input, TD));
    expect(r.ok).toBe(false);
  });

  it('regression: a root whose SAN extension OpenSSL cannot parse is no authority', () => {
    // Found by this target: the SAN's SEQUENCE tag turned into SET. The own extension reader still
    // saw cA=true, OpenSSL marks the certificate invalid (no CA), so the bundle held an authority
    // no path could ever end at.
    const input = corpus(TARGET).find((f) => f.name === 'finding-malformed-san-root.der')!.data;
    expect(() => parseBundle(input, TD)).toThrow(
      /authority 0 of "demo.local" is not a usable CA certificate/,
    );
  });

  it(
    'mutated bundles and JWKS documents: typed refusals, accepted ones hold only CA certificates',
    () => {
      const all = seeds(TARGET);
      const jwks = JSON.parse(
        corpus(TARGET)
          .find((f) => f.name === 'bundle.jwks.json')!
          .data.toString(),
      ) as {
        keys: Array<Record<string, unknown>>;
      };
      const x5c = jwks.keys.map((k) => (k['x5c'] as string[])[0]!);
      const ders = x5c.map((s) => Buffer.from(s, 'base64'));
      const key = fc.record(
        {
          use: fc.oneof(fc.constant('x509-svid'), fc.constant('jwt-svid'), fc.anything()),
          kty: fc.oneof(fc.constantFrom('EC', 'RSA', 'OKP'), fc.anything()),
          crv: fc.constantFrom('P-256', 'P-384', 'Ed25519'),
          x: fc.base64String(),
          y: fc.base64String(),
          kid: fc.string(),
          x5c: fc.oneof(
            fc.constantFrom(...x5c).map((s) => [s]),
            mutatedDer(ders, 2).map((d) => [d.toString('base64')]),
            fc.array(fc.string(), { maxLength: 2 }),
            fc.anything(),
          ),
        },
        { requiredKeys: ['use', 'x5c'] },
      );
      const doc = fc
        .record(
          {
            keys: fc.oneof(fc.array(key, { maxLength: 3 }), fc.anything()),
            spiffe_sequence: fc.oneof(
              fc.integer(),
              fc.double(),
              fc.constantFrom(2 ** 53, -1, '1'),
              fc.anything(),
            ),
            spiffe_refresh_hint: fc.oneof(fc.integer(), fc.double(), fc.anything()),
          },
          { requiredKeys: [] },
        )
        .map((d) => Buffer.from(JSON.stringify(d) ?? '', 'utf8'));
      // Real JWKS entries carry key parameters matching the certificate: take them from the seed.
      const realKeyDoc = fc
        .subarray(jwks.keys, { minLength: 1 })
        .chain((keys) =>
          fc.record({ keys: fc.constant(keys), spiffe_sequence: fc.oneof(fc.nat(), fc.constant(-1)) }),
        )
        .map((d) => Buffer.from(JSON.stringify(d)));
      fuzzSync(
        TARGET,
        CI_SECONDS,
        fc.oneof(
          mutatedBytes(all, 4),
          mutatedDer(
            all.filter((b) => b[0] === 0x30),
            3,
          ),
          doc,
          realKeyDoc,
        ),
        check,
      );
    },
    timeoutFor(CI_SECONDS),
  );
});
