import 'reflect-metadata';
import { createPrivateKey, webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const HOUR = 3_600_000;

/** KeyUsage flags by name, as @peculiar/x509 numbers them. */
export const KU = x509.KeyUsageFlags;

/** A generated certificate with its key pair. */
export interface TestCert {
  der: Buffer;
  pem: string;
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  /** The private key as a node KeyObject. */
  key: KeyObject;
  keyPem: string;
}

export interface CertSpec {
  /** Issuer; self-signed when absent. */
  issuer?: TestCert;
  subject?: string;
  /** URI SANs (e.g. SPIFFE IDs); none when empty or absent. */
  uris?: string[];
  dns?: string[];
  /** IP address SANs. */
  ips?: string[];
  /** BasicConstraints cA; the extension is omitted when undefined and `basicConstraints` is false. */
  ca?: boolean;
  /** Set false to leave BasicConstraints out entirely. */
  basicConstraints?: boolean;
  pathLen?: number;
  /** KeyUsage flags (x509.KeyUsageFlags); null leaves the extension out. */
  keyUsage?: number | null;
  /** ExtendedKeyUsage OIDs; null leaves the extension out. */
  eku?: string[] | null;
  notBefore?: Date;
  notAfter?: Date;
  /** Use an existing key pair instead of a fresh one. */
  keys?: webcrypto.CryptoKeyPair;
}

export const EKU = {
  serverAuth: x509.ExtendedKeyUsage.serverAuth as string,
  clientAuth: x509.ExtendedKeyUsage.clientAuth as string,
  codeSigning: x509.ExtendedKeyUsage.codeSigning as string,
};

let serialCounter = 1;
function serial(): string {
  // Positive, unique within the process, 16 bytes.
  const rand = Buffer.from(webcrypto.getRandomValues(new Uint8Array(12))).toString('hex');
  return `01${(serialCounter++).toString(16).padStart(6, '0')}${rand}`;
}

export async function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/**
 * Build one certificate exactly as specified, valid or not. Defaults make an X509-SVID leaf
 * (cA=false, digitalSignature, serverAuth+clientAuth) valid from one hour ago to one hour ahead;
 * CA certificates default to keyCertSign+cRLSign, no EKU, and one day either side of now.
 */
export async function makeCert(spec: CertSpec = {}): Promise<TestCert> {
  const keys = spec.keys ?? (await newKeys());
  const now = Date.now();
  const isCa = spec.ca ?? false;
  const extensions: x509.Extension[] = [];
  if (spec.basicConstraints !== false)
    extensions.push(new x509.BasicConstraintsExtension(isCa, spec.pathLen, true));
  const ku =
    spec.keyUsage === undefined ? (isCa ? KU.keyCertSign | KU.cRLSign : KU.digitalSignature) : spec.keyUsage;
  if (ku !== null) extensions.push(new x509.KeyUsagesExtension(ku, true));
  const eku = spec.eku === undefined ? (isCa ? null : [EKU.serverAuth, EKU.clientAuth]) : spec.eku;
  if (eku !== null) extensions.push(new x509.ExtendedKeyUsageExtension(eku));
  const names: x509.JsonGeneralName[] = [
    ...(spec.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(spec.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(spec.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
  if (spec.issuer)
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(spec.issuer.cert, false));
  const common = {
    serialNumber: serial(),
    notBefore: spec.notBefore ?? new Date(now - (isCa ? 24 * HOUR : HOUR)),
    notAfter: spec.notAfter ?? new Date(now + (isCa ? 24 * HOUR : HOUR)),
    signingAlgorithm: ALG,
    extensions,
  };
  const subject = spec.subject ?? (isCa ? 'O=test,CN=test CA' : 'O=test');
  const cert = spec.issuer
    ? await x509.X509CertificateGenerator.create({
        ...common,
        subject,
        issuer: spec.issuer.cert.subject,
        publicKey: keys.publicKey,
        signingKey: spec.issuer.keys.privateKey,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({ ...common, name: subject, keys });
  const der = Buffer.from(cert.rawData);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  return {
    der,
    pem: cert.toString('pem') + '\n',
    cert,
    keys,
    key,
    keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

/** A self-signed root CA for a trust domain (URI SAN spiffe://<td>). */
export async function makeRootCa(
  trustDomain: string,
  spec: Omit<CertSpec, 'issuer'> = {},
): Promise<TestCert> {
  return makeCert({
    subject: `O=test,CN=${trustDomain} root`,
    uris: [`spiffe://${trustDomain}`],
    ...spec,
    ca: spec.ca ?? true,
  });
}

/** An intermediate CA issued by `issuer`. */
export async function makeIntermediateCa(
  issuer: TestCert,
  trustDomain: string,
  spec: Omit<CertSpec, 'issuer'> = {},
): Promise<TestCert> {
  return makeCert({
    subject: `O=test,CN=${trustDomain} intermediate ${serialCounter}`,
    uris: [`spiffe://${trustDomain}`],
    ...spec,
    ca: spec.ca ?? true,
    issuer,
  });
}

/** An X509-SVID leaf for `spiffeId` issued by `issuer`; spec overrides any default. */
export async function makeLeaf(
  issuer: TestCert,
  spiffeId: string,
  spec: Omit<CertSpec, 'issuer'> = {},
): Promise<TestCert> {
  return makeCert({ subject: 'O=test,CN=workload', uris: [spiffeId], ...spec, issuer });
}

/** PEM of several certificates, in order. */
export function pemOf(...certs: TestCert[]): string {
  return certs.map((c) => c.pem).join('');
}

/**
 * A copy of a P-256 certificate whose SubjectPublicKeyInfo no longer holds a usable key: the x
 * coordinate of its EC point is inverted, so the point is off the curve. The DER (and the
 * signature over it, which no one can check any more) stays well-formed.
 */
export function withGarbledPublicKey(der: Buffer): Buffer {
  // BIT STRING of 66 bytes, no unused bits, uncompressed point (04 || x || y)
  const at = der.indexOf(Buffer.from([0x03, 0x42, 0x00, 0x04]));
  if (at < 0) throw new Error('not a P-256 certificate');
  const out = Buffer.from(der);
  for (let i = at + 4; i < at + 4 + 32; i++) out[i] = out[i]! ^ 0xff;
  return out;
}
