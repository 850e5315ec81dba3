import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TrustBundles } from '../../../src/spiffe/index.js';
import {
  X509SvidError,
  keyMatchesLeaf,
  parseCertificates,
  verifyX509Svid,
  type X509SvidReason,
} from '../../../src/spiffe/index.js';
import {
  EKU,
  KU,
  makeCert,
  makeIntermediateCa,
  makeLeaf,
  makeRootCa,
  pemOf,
  withGarbledPublicKey,
  type TestCert,
} from '../../helpers/certs.js';

const TD = 'example.org';
const WEB = 'spiffe://example.org/ns/demo/sa/web';
const HOUR = 3_600_000;

let root: TestCert;
let bundles: TrustBundles;

beforeAll(async () => {
  root = await makeRootCa(TD);
  bundles = new Map([[TD, [root.der]]]);
});

function reasonOf(fn: () => unknown): X509SvidReason {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof X509SvidError)) throw err;
    expect(err.code).toBe('MESHAUTH_ERR_X509_SVID');
    expect(err.message.startsWith('verify X509-SVID: ')).toBe(true);
    return err.reason;
  }
  throw new Error('expected an X509SvidError, verification passed');
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected an error');
}

describe('verifyX509Svid: valid chains', () => {
  it('accepts a leaf issued by the bundle authority and reports what it verified', async () => {
    const leaf = await makeLeaf(root, WEB, { dns: ['web.demo.svc'] });
    const v = verifyX509Svid([leaf.der], bundles);
    expect(v.spiffeId.toString()).toBe(WEB);
    expect(v.spiffeId.trustDomain.name).toBe(TD);
    expect(v.serials).toEqual([leaf.cert.serialNumber.toUpperCase()]);
    expect(v.notBefore.getTime()).toBe(leaf.cert.notBefore.getTime());
    expect(v.notAfter.getTime()).toBe(leaf.cert.notAfter.getTime());
    expect(v.chainNotAfter.getTime()).toBe(
      Math.min(leaf.cert.notAfter.getTime(), root.cert.notAfter.getTime()),
    );
    expect(v.chain).toHaveLength(1);
    expect(v.leaf.raw.equals(leaf.der)).toBe(true);
  });

  it('accepts the same chain as one DER buffer, PEM text and a PEM buffer with the root appended', async () => {
    const inter = await makeIntermediateCa(root, TD);
    const leaf = await makeLeaf(inter, WEB);
    const forms: Array<readonly Buffer[] | Buffer> = [
      [leaf.der, inter.der],
      Buffer.concat([leaf.der, inter.der]),
      Buffer.from(pemOf(leaf, inter)),
      Buffer.from(`# comment before\n${pemOf(leaf, inter, root)}`),
      // openssl-style text before each block, longer than any fixed sniffing window
      Buffer.from(
        `subject=${'O=test, CN=workload '.repeat(8)}\nissuer=${'x'.repeat(100)}\n${leaf.pem}` +
          `subject=${'y'.repeat(100)}\n${inter.pem}`,
      ),
    ];
    for (const form of forms) {
      const v = verifyX509Svid(form, bundles);
      expect(v.spiffeId.toString()).toBe(WEB);
      expect(v.serials[0]).toBe(leaf.cert.serialNumber.toUpperCase());
    }
    expect(parseCertificates(pemOf(leaf, inter))).toEqual([leaf.der, inter.der]);
    expect(parseCertificates(Buffer.concat([leaf.der, inter.der]))).toEqual([leaf.der, inter.der]);
  });

  it('accepts a leaf without ExtendedKeyUsage and with SPIRE key usage', async () => {
    const leaf = await makeLeaf(root, WEB, {
      eku: null,
      keyUsage: KU.digitalSignature | KU.keyEncipherment | KU.keyAgreement,
    });
    expect(verifyX509Svid([leaf.der], bundles).spiffeId.toString()).toBe(WEB);
  });

  it('walks two intermediates presented in any order, and the chain expiry is the earliest notAfter', async () => {
    const i1 = await makeIntermediateCa(root, TD, { pathLen: 1 });
    const i2 = await makeIntermediateCa(i1, TD, { pathLen: 0, notAfter: new Date(Date.now() + HOUR / 2) });
    const leaf = await makeLeaf(i2, WEB);
    for (const chain of [
      [leaf.der, i2.der, i1.der],
      [leaf.der, i1.der, i2.der],
    ]) {
      const v = verifyX509Svid(chain, bundles);
      expect(v.spiffeId.toString()).toBe(WEB);
      expect(v.chainNotAfter.getTime()).toBe(i2.cert.notAfter.getTime());
      expect(v.notAfter.getTime()).toBe(leaf.cert.notAfter.getTime());
    }
  });

  it('uses the bundle of the leaf trust domain among several', async () => {
    const other = await makeRootCa('other.org');
    const leaf = await makeLeaf(other, 'spiffe://other.org/ns/x');
    const both = new Map([
      [TD, [root.der]],
      ['other.org', [other.der]],
    ]);
    expect(verifyX509Svid([leaf.der], both).spiffeId.trustDomain.name).toBe('other.org');
  });

  it('accepts a leaf issued by any of several authorities of the trust domain (CA rotation)', async () => {
    const next = await makeRootCa(TD);
    const leaf = await makeLeaf(next, WEB);
    expect(verifyX509Svid([leaf.der], new Map([[TD, [root.der, next.der]]])).spiffeId.toString()).toBe(WEB);
  });
});

describe('verifyX509Svid: validity', () => {
  it('rejects an expired leaf', async () => {
    const leaf = await makeLeaf(root, WEB, {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - 1000),
    });
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles))).toBe('expired');
    expect(messageOf(() => verifyX509Svid([leaf.der], bundles))).toContain(
      `leaf expired at ${leaf.cert.notAfter.toISOString()}`,
    );
  });

  it('rejects a leaf that is not valid yet', async () => {
    const leaf = await makeLeaf(root, WEB, {
      notBefore: new Date(Date.now() + 60_000),
      notAfter: new Date(Date.now() + HOUR),
    });
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles))).toBe('not-yet-valid');
  });

  it('checks validity at the given time', async () => {
    const leaf = await makeLeaf(root, WEB);
    const after = new Date(leaf.cert.notAfter.getTime() + 1000);
    const before = new Date(leaf.cert.notBefore.getTime() - 1000);
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles, { now: after }))).toBe('expired');
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles, { now: before }))).toBe('not-yet-valid');
    // notBefore is inside the validity period; the notAfter second is not (OpenSSL's X509_cmp_time)
    expect(verifyX509Svid([leaf.der], bundles, { now: leaf.cert.notBefore }).spiffeId.toString()).toBe(WEB);
    const lastValid = new Date(leaf.cert.notAfter.getTime() - 1000);
    expect(verifyX509Svid([leaf.der], bundles, { now: lastValid }).spiffeId.toString()).toBe(WEB);
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles, { now: leaf.cert.notAfter }))).toBe('expired');
  });

  it('rejects an expired intermediate and an expired trust anchor', async () => {
    const past = { notBefore: new Date(Date.now() - 3 * HOUR), notAfter: new Date(Date.now() - HOUR) };
    const oldInter = await makeIntermediateCa(root, TD, past);
    const leaf = await makeLeaf(oldInter, WEB, { notBefore: new Date(Date.now() - 2 * HOUR) });
    expect(reasonOf(() => verifyX509Svid([leaf.der, oldInter.der], bundles))).toBe('expired');
    expect(messageOf(() => verifyX509Svid([leaf.der, oldInter.der], bundles))).toContain(
      'intermediate 1 expired',
    );

    const oldRoot = await makeRootCa(TD, past);
    const leaf2 = await makeLeaf(oldRoot, WEB);
    expect(reasonOf(() => verifyX509Svid([leaf2.der], new Map([[TD, [oldRoot.der]]])))).toBe('expired');
    expect(messageOf(() => verifyX509Svid([leaf2.der], new Map([[TD, [oldRoot.der]]])))).toContain(
      'trust anchor',
    );
  });
});

describe('verifyX509Svid: trust', () => {
  it('rejects a leaf of a trust domain without a bundle', async () => {
    const foreignRoot = await makeRootCa('foreign.org');
    const leaf = await makeLeaf(foreignRoot, 'spiffe://foreign.org/ns/a');
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles))).toBe('no-bundle');
    expect(messageOf(() => verifyX509Svid([leaf.der], bundles))).toBe(
      'verify X509-SVID: no trust bundle for trust domain "foreign.org"',
    );
    expect(reasonOf(() => verifyX509Svid([leaf.der], new Map([['foreign.org', []]])))).toBe('no-bundle');
  });

  it('rejects a leaf signed by an unknown CA, even one with the same name', async () => {
    const impostor = await makeRootCa(TD, { subject: root.cert.subject });
    const leaf = await makeLeaf(impostor, WEB);
    expect(leaf.cert.issuer).toBe(root.cert.subject);
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles))).toBe('untrusted');
    expect(messageOf(() => verifyX509Svid([leaf.der], bundles))).toBe(
      `verify X509-SVID: ${WEB} does not chain to an authority of the "${TD}" bundle` +
        ' (OpenSSL error 20: unable to get local issuer certificate)',
    );
  });

  it('checks the leaf against its own trust domain only: a CA of another trust domain cannot vouch for it', async () => {
    const other = await makeRootCa('other.org');
    const leaf = await makeLeaf(other, WEB);
    const both = new Map([
      [TD, [root.der]],
      ['other.org', [other.der]],
    ]);
    expect(reasonOf(() => verifyX509Svid([leaf.der], both))).toBe('untrusted');
  });

  it('rejects a chain whose intermediate is missing', async () => {
    const inter = await makeIntermediateCa(root, TD);
    const leaf = await makeLeaf(inter, WEB);
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles))).toBe('untrusted');
  });

  it('rejects an intermediate that is not a CA', async () => {
    for (const spec of [
      { ca: false, keyUsage: KU.digitalSignature },
      { ca: false, keyUsage: KU.keyCertSign },
      { basicConstraints: false, keyUsage: KU.keyCertSign },
      { ca: true, keyUsage: KU.digitalSignature },
    ]) {
      const notCa = await makeIntermediateCa(root, TD, { ...spec, eku: null });
      const leaf = await makeLeaf(notCa, WEB);
      expect(reasonOf(() => verifyX509Svid([leaf.der, notCa.der], bundles))).toBe('bad-intermediate');
    }
  });

  it('enforces path length constraints of intermediates and of the trust anchor', async () => {
    const i1 = await makeIntermediateCa(root, TD, { pathLen: 0 });
    const i2 = await makeIntermediateCa(i1, TD);
    const leaf = await makeLeaf(i2, WEB);
    expect(reasonOf(() => verifyX509Svid([leaf.der, i2.der, i1.der], bundles))).toBe('bad-intermediate');

    const strictRoot = await makeRootCa(TD, { pathLen: 0 });
    const inter = await makeIntermediateCa(strictRoot, TD);
    const leaf2 = await makeLeaf(inter, WEB);
    const strict = new Map([[TD, [strictRoot.der]]]);
    expect(reasonOf(() => verifyX509Svid([leaf2.der, inter.der], strict))).toBe('bad-intermediate');
    // the same root may still sign leaves directly
    expect(verifyX509Svid([(await makeLeaf(strictRoot, WEB)).der], strict).spiffeId.toString()).toBe(WEB);
  });

  it('refuses a bundle authority that is not a CA', async () => {
    const notCa = await makeCert({
      subject: 'O=test,CN=not a CA',
      keyUsage: KU.digitalSignature | KU.keyCertSign,
      eku: null,
    });
    const leaf = await makeLeaf(notCa, WEB);
    expect(reasonOf(() => verifyX509Svid([leaf.der], new Map([[TD, [notCa.der]]])))).toBe('untrusted');
  });

  it('rejects an intermediate that carries a workload SPIFFE ID', async () => {
    const inter = await makeIntermediateCa(root, TD, { uris: ['spiffe://example.org/ns/demo/sa/evil'] });
    const leaf = await makeLeaf(inter, WEB);
    expect(reasonOf(() => verifyX509Svid([leaf.der, inter.der], bundles))).toBe('bad-intermediate');
  });

  it('rejects chains longer than the limit', async () => {
    let issuer = root;
    const inters: TestCert[] = [];
    for (let i = 0; i < 3; i++) {
      issuer = await makeIntermediateCa(issuer, TD);
      inters.unshift(issuer);
    }
    const leaf = await makeLeaf(issuer, WEB);
    const chain = [leaf.der, ...inters.map((c) => c.der)];
    expect(verifyX509Svid(chain, bundles).spiffeId.toString()).toBe(WEB);
    expect(reasonOf(() => verifyX509Svid(chain, bundles, { maxChainLength: 3 }))).toBe('malformed');
  });
});

describe('verifyX509Svid: leaf rules', () => {
  const cases: Array<
    [rule: string, reason: X509SvidReason, spec: Parameters<typeof makeLeaf>[2], id?: string]
  > = [
    ['no URI SAN (DNS SAN only)', 'no-uri-san', { uris: [], dns: ['web.example.org'] }],
    ['no SAN at all', 'no-uri-san', { uris: [] }],
    ['two URI SANs', 'multiple-uri-sans', { uris: [WEB, 'spiffe://example.org/ns/demo/sa/db'] }],
    ['a SPIFFE ID and an https URI', 'multiple-uri-sans', { uris: [WEB, 'https://example.org/'] }],
    ['URI SAN that is not a SPIFFE ID', 'invalid-spiffe-id', { uris: ['https://example.org/ns/demo'] }],
    [
      'SPIFFE ID with upper-case trust domain',
      'invalid-spiffe-id',
      { uris: ['spiffe://Example.org/ns/demo'] },
    ],
    ['SPIFFE ID without a path', 'root-path', { uris: ['spiffe://example.org'] }],
    ['CA leaf', 'leaf-is-ca', { ca: true, keyUsage: KU.digitalSignature }],
    ['CA leaf with keyCertSign', 'leaf-is-ca', { ca: true, keyUsage: KU.digitalSignature | KU.keyCertSign }],
    ['no KeyUsage', 'no-key-usage', { keyUsage: null }],
    ['missing digitalSignature', 'no-digital-signature', { keyUsage: KU.keyEncipherment | KU.keyAgreement }],
    ['keyCertSign on the leaf', 'leaf-key-cert-sign', { keyUsage: KU.digitalSignature | KU.keyCertSign }],
    ['cRLSign on the leaf', 'leaf-crl-sign', { keyUsage: KU.digitalSignature | KU.cRLSign }],
    ['EKU serverAuth only', 'bad-eku', { eku: [EKU.serverAuth] }],
    ['EKU clientAuth only', 'bad-eku', { eku: [EKU.clientAuth] }],
    ['EKU codeSigning', 'bad-eku', { eku: [EKU.codeSigning] }],
    ['empty EKU', 'bad-eku', { eku: [] }],
  ];

  it.each(cases)('%s → %s', async (_rule, reason, spec) => {
    const leaf = await makeLeaf(root, WEB, spec);
    expect(reasonOf(() => verifyX509Svid([leaf.der], bundles))).toBe(reason);
  });

  it('takes the FIRST certificate as the leaf, never a later one', async () => {
    const inter = await makeIntermediateCa(root, TD);
    const leaf = await makeLeaf(inter, WEB);
    // the intermediate names its trust domain (spiffe://example.org), which has no workload path
    expect(reasonOf(() => verifyX509Svid([inter.der, leaf.der], bundles))).toBe('root-path');
    expect(reasonOf(() => verifyX509Svid(Buffer.from(pemOf(inter, leaf)), bundles))).toBe('root-path');
    const bare = await makeIntermediateCa(root, TD, { uris: [] });
    const leaf2 = await makeLeaf(bare, WEB);
    expect(reasonOf(() => verifyX509Svid([bare.der, leaf2.der], bundles))).toBe('no-uri-san');
    // a CA certificate that does carry a workload ID is still refused as a leaf
    const withId = await makeIntermediateCa(root, TD, {
      uris: [WEB],
      keyUsage: KU.digitalSignature | KU.keyCertSign,
    });
    const leaf3 = await makeLeaf(withId, WEB);
    expect(reasonOf(() => verifyX509Svid([withId.der, leaf3.der], bundles))).toBe('leaf-is-ca');
    expect(verifyX509Svid([leaf2.der, bare.der], bundles).spiffeId.toString()).toBe(WEB);
  });

  it('checks the leaf rules before trust (a bad leaf from a trusted CA is still rejected)', async () => {
    const leaf = await makeLeaf(root, WEB, { uris: [WEB, WEB] });
    expect(reasonOf(() => verifyX509Svid([leaf.der], new Map()))).toBe('multiple-uri-sans');
  });
});

describe('verifyX509Svid: malformed input', () => {
  it('rejects an empty chain', () => {
    expect(reasonOf(() => verifyX509Svid([], bundles))).toBe('empty-chain');
  });

  it('rejects bytes that are not certificates', async () => {
    const leaf = await makeLeaf(root, WEB);
    const inputs: Array<readonly Buffer[] | Buffer> = [
      Buffer.alloc(0),
      Buffer.from('not a certificate at all'),
      Buffer.from([0x30, 0x82, 0x10, 0x00, 0x01]),
      leaf.der.subarray(0, leaf.der.length - 10),
      Buffer.concat([leaf.der, Buffer.from([0x02, 0x01])]),
      Buffer.from('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'),
      Buffer.from('-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n'),
      [Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])],
      [leaf.der, Buffer.from('garbage')],
    ];
    for (const input of inputs) expect(reasonOf(() => verifyX509Svid(input, bundles))).toBe('malformed');
  });

  it('rejects a leaf whose signature was tampered with', async () => {
    const leaf = await makeLeaf(root, WEB);
    const bad = Buffer.from(leaf.der);
    bad[bad.length - 5] ^= 0xff;
    expect(reasonOf(() => verifyX509Svid([bad], bundles))).toBe('bad-signature');
  });

  it('rejects a malformed bundle authority', async () => {
    const leaf = await makeLeaf(root, WEB);
    expect(reasonOf(() => verifyX509Svid([leaf.der], new Map([[TD, [Buffer.from('nope')]]])))).toBe(
      'malformed',
    );
  });
});

describe('verifyX509Svid: a public key that cannot be parsed', () => {
  it('is bad-public-key, naming the certificate, for the leaf, an intermediate and an authority', async () => {
    const inter = await makeIntermediateCa(root, TD);
    const leaf = await makeLeaf(inter, WEB);
    const garbled = (der: Buffer, chain: Buffer[], b: TrustBundles = bundles) => {
      try {
        verifyX509Svid(chain, b);
      } catch (err) {
        expect(err).toBeInstanceOf(X509SvidError);
        return { reason: (err as X509SvidError).reason, message: (err as Error).message };
      }
      throw new Error(`verified with ${der.length} garbled bytes`);
    };
    const badLeaf = withGarbledPublicKey(leaf.der);
    expect(garbled(badLeaf, [badLeaf, inter.der])).toEqual({
      reason: 'bad-public-key',
      message: expect.stringMatching(
        /^verify X509-SVID: leaf has an unusable public key: the SubjectPublicKeyInfo does not parse as a key: \S/,
      ),
    });
    const badInter = withGarbledPublicKey(inter.der);
    expect(garbled(badInter, [leaf.der, badInter])).toMatchObject({
      reason: 'bad-public-key',
      message: expect.stringMatching(/^verify X509-SVID: chain certificate 1 has an unusable public key/),
    });
    const badRoot = withGarbledPublicKey(root.der);
    expect(garbled(badRoot, [leaf.der, inter.der], new Map([[TD, [badRoot]]]))).toMatchObject({
      reason: 'bad-public-key',
      message: expect.stringMatching(
        /^verify X509-SVID: bundle authority 0 of example\.org has an unusable public key/,
      ),
    });
    // the intact chain still verifies
    expect(verifyX509Svid([leaf.der, inter.der], bundles).spiffeId.toString()).toBe(WEB);
  });
});

describe('keyMatchesLeaf', () => {
  it('is true only for the key of the leaf', async () => {
    const leaf = await makeLeaf(root, WEB);
    const other = await makeLeaf(root, WEB);
    const v = verifyX509Svid([leaf.der], bundles);
    expect(keyMatchesLeaf(leaf.key, v.leaf)).toBe(true);
    expect(keyMatchesLeaf(other.key, v.leaf)).toBe(false);
    expect(keyMatchesLeaf(root.key, v.leaf)).toBe(false);
    expect(keyMatchesLeaf(createPrivateKey(leaf.keyPem), v.leaf)).toBe(true);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    expect(keyMatchesLeaf(rsa, v.leaf)).toBe(false);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    expect(keyMatchesLeaf(p384, v.leaf)).toBe(false);
  });
});
