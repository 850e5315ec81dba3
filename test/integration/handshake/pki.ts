import 'reflect-metadata';
import { webcrypto, createPrivateKey, KeyObject, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { Svid, TrustBundles } from '../../../src/spiffe/index.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface TestPki {
  trustDomain: string;
  bundles: TrustBundles;
  /** `extensions` are added to the leaf as given (e.g. an unknown critical extension). */
  issue(spiffeId: string, opts?: { ttlMs?: number; extensions?: x509.Extension[] }): Promise<Svid>;
}

/**
 * A throwaway CA for one trust domain (ECDSA P-256). With `intermediate`, leaves are issued by an
 * intermediate CA and presented as [leaf, intermediate].
 */
export async function newPki(
  trustDomain: string,
  opts: { intermediate?: boolean; caTtlMs?: number } = {},
): Promise<TestPki> {
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `O=test,CN=${trustDomain} root`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (opts.caTtlMs ?? 24 * 3_600_000)),
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
    ],
  });
  const caDer = Buffer.from(ca.rawData);
  let issuer = ca;
  let issuerKeys = caKeys;
  const extraChain: Buffer[] = [];
  if (opts.intermediate) {
    issuerKeys = (await webcrypto.subtle.generateKey(ALG, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    issuer = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `O=test,CN=${trustDomain} intermediate`,
      issuer: ca.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 12 * 3_600_000),
      publicKey: issuerKeys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(issuerKeys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(ca, false),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
      ],
    });
    extraChain.push(Buffer.from(issuer.rawData));
  }
  return {
    trustDomain,
    bundles: new Map([[trustDomain, [caDer]]]),
    async issue(spiffeId, opts = {}) {
      const keys = (await webcrypto.subtle.generateKey(ALG, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair;
      const t = Date.now();
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: 'O=SPIRE',
        issuer: issuer.subject,
        notBefore: new Date(t - 60_000),
        notAfter: new Date(t + (opts.ttlMs ?? 3_600_000)),
        publicKey: keys.publicKey,
        signingKey: issuerKeys.privateKey,
        signingAlgorithm: ALG,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([
            x509.ExtendedKeyUsage.serverAuth,
            x509.ExtendedKeyUsage.clientAuth,
          ]),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
          await x509.AuthorityKeyIdentifierExtension.create(issuer, false),
          ...(opts.extensions ?? []),
        ],
      });
      const der = Buffer.from(cert.rawData);
      const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
      const key: KeyObject = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
      const leaf = new X509Certificate(der);
      return {
        spiffeId,
        chainDer: [der, ...extraChain],
        chainPem: [leaf, ...extraChain.map((c) => new X509Certificate(c))].map((c) => c.toString()).join(''),
        key,
        keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
        leaf,
        notBefore: new Date(leaf.validFrom),
        notAfter: new Date(leaf.validTo),
      };
    },
  };
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
    .toString('hex')
    .replace(/^[89a-f]/, '1');
}
