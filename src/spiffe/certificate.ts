import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { children, DerError, oidString, readTlv, splitDer } from './der.js';
import { PublicKeyError } from './errors.js';

/** KeyUsage bits (RFC 5280 4.2.1.3), as bit positions. */
export const KeyUsage = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
} as const;
export type KeyUsageName = keyof typeof KeyUsage;

export const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const OID_SAN = '2.5.29.17';
const OID_KEY_USAGE = '2.5.29.15';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_EXT_KEY_USAGE = '2.5.29.37';

/** The extensions an X509-SVID check needs, read straight from the DER. */
export interface CertExtensions {
  uriSans: string[];
  /** undefined when the certificate has no KeyUsage extension. */
  keyUsage: Set<KeyUsageName> | undefined;
  /** undefined when there is no BasicConstraints extension. */
  basicConstraints: { ca: boolean; pathLen: number | undefined } | undefined;
  /** undefined when there is no ExtendedKeyUsage extension. */
  extKeyUsage: string[] | undefined;
}

/** One parsed certificate: node's X509Certificate plus the extensions it does not expose. */
export interface ParsedCertificate {
  der: Buffer;
  x509: X509Certificate;
  ext: CertExtensions;
}

/** Parse the extensions of a DER certificate. Throws DerError on malformed DER. */
export function readExtensions(der: Uint8Array): CertExtensions {
  const cert = readTlv(der, 0);
  if (cert.tag !== 0x30) throw new DerError('certificate is not a SEQUENCE');
  const tbs = children(der, cert)[0];
  if (!tbs || tbs.tag !== 0x30) throw new DerError('tbsCertificate is not a SEQUENCE');
  const out: CertExtensions = {
    uriSans: [],
    keyUsage: undefined,
    basicConstraints: undefined,
    extKeyUsage: undefined,
  };
  const extsWrapper = children(der, tbs).find((t) => t.tag === 0xa3);
  if (!extsWrapper) return out;
  const exts = children(der, extsWrapper)[0];
  if (!exts || exts.tag !== 0x30) throw new DerError('extensions are not a SEQUENCE');
  for (const ext of children(der, exts)) {
    const parts = children(der, ext);
    if (parts.length < 2 || parts.length > 3)
      throw new DerError('extension is not an OID, optional critical flag and value');
    const oid = oidString(der, parts[0]!);
    const value = parts[parts.length - 1]!;
    if (value.tag !== 0x04) throw new DerError(`extension ${oid} has no OCTET STRING value`);
    const inner = readTlv(der, value.start, value.end);
    switch (oid) {
      case OID_SAN:
        for (const name of children(der, inner)) {
          if (name.tag === 0x86)
            out.uriSans.push(Buffer.from(der.subarray(name.start, name.end)).toString('latin1'));
        }
        break;
      case OID_KEY_USAGE: {
        if (inner.tag !== 0x03 || inner.end <= inner.start)
          throw new DerError('KeyUsage is not a BIT STRING');
        const set = new Set<KeyUsageName>();
        const bytes = der.subarray(inner.start + 1, inner.end);
        for (const [name, bit] of Object.entries(KeyUsage) as Array<[KeyUsageName, number]>) {
          const byte = bytes[bit >> 3];
          if (byte !== undefined && byte & (0x80 >> (bit & 7))) set.add(name);
        }
        out.keyUsage = set;
        break;
      }
      case OID_BASIC_CONSTRAINTS: {
        let ca = false;
        let pathLen: number | undefined;
        for (const f of children(der, inner)) {
          if (f.tag === 0x01) ca = der[f.start] !== 0;
          if (f.tag === 0x02) {
            pathLen = 0;
            for (let i = f.start; i < f.end; i++) pathLen = pathLen * 256 + der[i]!;
          }
        }
        out.basicConstraints = { ca, pathLen };
        break;
      }
      case OID_EXT_KEY_USAGE:
        out.extKeyUsage = children(der, inner).map((t) => oidString(der, t));
        break;
      default:
        break;
    }
  }
  return out;
}

const PEM_RE = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;

/**
 * Certificates from PEM text (any number of CERTIFICATE blocks) or concatenated DER. Throws on
 * input that is neither, or that holds no certificate.
 */
export function parseCertificates(data: Buffer | string): Buffer[] {
  const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  if (buf.length === 0) throw new DerError('empty input');
  // DER always starts with a SEQUENCE; PEM may follow any amount of text (e.g. openssl's
  // "subject=..." or "Bag Attributes" lines), so look for its marker anywhere.
  const hasPem = buf.includes('-----BEGIN');
  if (buf[0] === 0x30 || !hasPem) {
    try {
      return splitDer(buf);
    } catch (err) {
      if (!hasPem) throw new DerError(`neither PEM nor DER (${(err as Error).message})`);
    }
  }
  const out: Buffer[] = [];
  const text = buf.toString('latin1');
  for (const m of text.matchAll(PEM_RE)) out.push(pemBody(text, m, 1, `CERTIFICATE block ${out.length}`));
  if (out.length === 0) throw new DerError('no CERTIFICATE block in PEM input');
  return out;
}

/**
 * The DER of one PEM block (`m` a match of a BEGIN..END regex, body in group `bodyGroup`). Its body
 * must be strict base64 (RFC 7468 §3): Node's decoder skips characters outside the alphabet, and
 * the garbage it then hands to OpenSSL is reported as "PEM routines::no start line" or "DECODER
 * routines::unsupported", which name the wrong problem. RFC 1421 header lines ("Proc-Type: ...")
 * before a blank line are skipped. Throws DerError naming the block and the line of the file the
 * bad character is on.
 */
function pemBody(text: string, m: RegExpMatchArray, bodyGroup: number, where: string): Buffer {
  let body = m[bodyGroup]!;
  // the body starts after the BEGIN line's closing dashes
  let bodyAt = m.index! + m[0].indexOf('-----', 5) + 5;
  const headers = /^\s*(?:[A-Za-z][\w-]*:[^\n]*\n(?:[ \t][^\n]*\n)*)+\s*?\n/.exec(body);
  if (headers) {
    bodyAt += headers[0].length;
    body = body.slice(headers[0].length);
  }
  const bad = /[^A-Za-z0-9+/=\s]|=(?=[\s=]*[^\s=])/.exec(body);
  if (bad) {
    const line = text.slice(0, bodyAt + bad.index).split('\n').length;
    const what = bad[0] === '=' ? '"=" padding before the end' : `character ${JSON.stringify(bad[0])}`;
    throw new DerError(`${where}: bad base64 in the PEM body: ${what} on line ${line}`);
  }
  const b64 = body.replace(/\s+/g, '');
  if (b64.length === 0) throw new DerError(`${where}: empty PEM body`);
  if (b64.length % 4 !== 0)
    throw new DerError(
      `${where}: bad base64 in the PEM body: ${b64.length} characters, not a multiple of 4 (cut short?)`,
    );
  return Buffer.from(b64, 'base64');
}

const ANY_PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * A private key from PEM (PKCS#8, SEC1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY") or DER
 * (PKCS#8, then SEC1). Throws an Error whose message says what is wrong without OpenSSL's
 * "error:1E08010C:" prefix; for a PEM body that is not base64 it says so, with the line, where
 * OpenSSL would only say "DECODER routines::unsupported".
 */
export function parsePrivateKey(data: Buffer | string): KeyObject {
  const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  // OpenSSL calls these "asn1 encoding routines::not enough data" and "DECODER routines::unsupported"
  if (buf.length === 0) throw new Error('empty input');
  const pem = buf.includes('-----BEGIN');
  if (pem) {
    const labels = [...buf.toString('latin1').matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1]!);
    if (!labels.some((l) => l.endsWith('PRIVATE KEY')))
      throw new Error(`no PRIVATE KEY PEM block (found ${[...new Set(labels)].join(', ') || 'none'})`);
  }
  try {
    if (pem) return createPrivateKey(buf);
    try {
      return createPrivateKey({ key: buf, format: 'der', type: 'pkcs8' });
    } catch {
      return createPrivateKey({ key: buf, format: 'der', type: 'sec1' });
    }
  } catch (err) {
    if (pem) {
      const text = buf.toString('latin1');
      let n = 0;
      for (const m of text.matchAll(ANY_PEM_RE)) pemBody(text, m, 2, `${m[1]} block ${n++}`);
      if (n === 0) throw new Error('no PEM block with a matching END line', { cause: err });
    }
    throw new Error(opensslReason(err), { cause: err });
  }
}

/** OpenSSL's reason from a Node crypto error, without its "error:1E08010C:" code prefix. */
function opensslReason(err: unknown): string {
  return ((err as Error).message ?? String(err)).replace(/^error:[0-9A-Fa-f]+:/, '');
}

/**
 * The public key of a certificate. Node parses it only when asked, so a certificate can parse
 * while its key does not; throws PublicKeyError naming the SubjectPublicKeyInfo, with OpenSSL's
 * reason without its "error:03000072:" prefix.
 */
export function publicKeyOf(x509: X509Certificate): KeyObject {
  try {
    return x509.publicKey;
  } catch (err) {
    throw new PublicKeyError(`the SubjectPublicKeyInfo does not parse as a key: ${opensslReason(err)}`, {
      cause: err,
    });
  }
}

/**
 * Parse one DER certificate fully, its public key included. Throws DerError or node's error on
 * malformed input, PublicKeyError when only the public key is unusable.
 */
export function parseCertificate(der: Buffer): ParsedCertificate {
  // the DER structure first: for bytes that are not DER, OpenSSL's own complaint comes from its
  // PEM fallback ("no start line") and says nothing about what is wrong with them
  const ext = readExtensions(der);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (err) {
    throw new DerError('the DER does not parse as an X.509 certificate', { cause: err });
  }
  publicKeyOf(x509);
  return { der, x509, ext };
}

/** PEM text for DER certificates. */
export function toPem(ders: readonly Buffer[]): string {
  return ders
    .map(
      (d) =>
        `-----BEGIN CERTIFICATE-----\n${d
          .toString('base64')
          .replace(/(.{64})/g, '$1\n')
          .replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`,
    )
    .join('');
}
