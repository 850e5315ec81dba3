import { BundleError, PublicKeyError } from './errors.js';
import { parseCertificate, parseCertificates } from './certificate.js';
import { parseTrustDomain } from './id.js';

/** A trust bundle's X.509 authorities plus the JWKS metadata, when it came in that form. */
export interface X509Bundle {
  trustDomain: string;
  x509Authorities: Buffer[];
  sequence?: number;
  refreshHintSeconds?: number;
}

/**
 * Most X.509 authorities one trust bundle may hold. A bundle keeps the current authority and the
 * few it rotates through; every authority is parsed and becomes a trust anchor of every
 * verification, so an unbounded bundle would cost memory and time on each handshake.
 */
export const MAX_BUNDLE_AUTHORITIES = 256;
/** Largest bundle document accepted (bytes), PEM, DER or JWKS. */
export const MAX_BUNDLE_BYTES = 4 * 1024 * 1024;

function checkAuthorities(ders: Buffer[], trustDomain: string, what: string): Buffer[] {
  if (ders.length === 0)
    throw new BundleError(`${what}: bundle for "${trustDomain}" has no X.509 authorities`);
  if (ders.length > MAX_BUNDLE_AUTHORITIES) {
    throw new BundleError(
      `${what}: bundle for "${trustDomain}" has ${ders.length} X.509 authorities, more than ${MAX_BUNDLE_AUTHORITIES}`,
    );
  }
  ders.forEach((d, i) => {
    let p;
    try {
      p = parseCertificate(d);
    } catch (err) {
      // a certificate can parse while its key does not (e.g. an unknown curve): such an authority
      // verifies nothing and cannot be written back as JWK
      if (err instanceof PublicKeyError)
        throw new BundleError(
          `${what}: authority ${i} of "${trustDomain}" has an unusable public key: ${err.message}`,
          { cause: err },
        );
      throw new BundleError(
        `${what}: authority ${i} of "${trustDomain}" is not a valid certificate: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (!p.ext.basicConstraints?.ca) {
      throw new BundleError(`${what}: authority ${i} of "${trustDomain}" is not a CA certificate`);
    }
    // OpenSSL, which validates paths, must see a CA too: a certificate with a malformed extension
    // or a KeyUsage without keyCertSign is no CA to it and could never anchor a path.
    if (!p.x509.ca) {
      throw new BundleError(
        `${what}: authority ${i} of "${trustDomain}" is not a usable CA certificate (OpenSSL rejects its extensions or KeyUsage)`,
      );
    }
  });
  return ders;
}

/**
 * Parse a bundle file for `trustDomain`: PEM, concatenated DER, or a SPIFFE JWKS bundle (JSON).
 * A bundle with zero authorities is rejected.
 */
export function parseBundle(data: Buffer | string, trustDomain: string): X509Bundle {
  const td = parseTrustDomain(trustDomain).name;
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  if (size > MAX_BUNDLE_BYTES) {
    throw new BundleError(`parse bundle for "${td}": ${size} bytes, more than ${MAX_BUNDLE_BYTES}`);
  }
  const text = typeof data === 'string' ? data : data.toString('utf8');
  if (text.trimStart().startsWith('{')) return { ...parseJwksBundle(text, td) };
  let ders: Buffer[];
  try {
    ders = parseCertificates(data);
  } catch (err) {
    throw new BundleError(`parse bundle for "${td}": ${(err as Error).message}`, { cause: err });
  }
  return { trustDomain: td, x509Authorities: checkAuthorities(ders, td, 'parse bundle') };
}

/** Parse a SPIFFE bundle in JWK Set form. Entries with a `use` other than x509-svid are ignored. */
export function parseJwksBundle(json: string, trustDomain: string): X509Bundle {
  trustDomain = parseTrustDomain(trustDomain).name;
  const what = `parse JWKS bundle for "${trustDomain}"`;
  if (Buffer.byteLength(json) > MAX_BUNDLE_BYTES) {
    throw new BundleError(`${what}: more than ${MAX_BUNDLE_BYTES} bytes`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new BundleError(`${what}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw new BundleError(`${what}: "keys" must be an array`);
  }
  const d = doc as { keys: unknown[]; spiffe_sequence?: unknown; spiffe_refresh_hint?: unknown };
  const ders: Buffer[] = [];
  d.keys.forEach((k, i) => {
    if (typeof k !== 'object' || k === null) throw new BundleError(`${what}: keys[${i}] is not an object`);
    const key = k as { use?: unknown; x5c?: unknown; kid?: unknown };
    if (key.use !== 'x509-svid') return;
    if (!Array.isArray(key.x5c) || key.x5c.length !== 1 || typeof key.x5c[0] !== 'string') {
      throw new BundleError(`${what}: keys[${i}].x5c must hold exactly one certificate`);
    }
    if (key.kid !== undefined)
      throw new BundleError(`${what}: keys[${i}] is an x509-svid entry and must not have "kid"`);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key.x5c[0]))
      throw new BundleError(`${what}: keys[${i}].x5c[0] is not standard base64`);
    const der = Buffer.from(key.x5c[0], 'base64');
    const mismatch = keyParamsMismatch(k as Record<string, unknown>, der);
    if (mismatch) throw new BundleError(`${what}: keys[${i}] ${mismatch}`);
    ders.push(der);
  });
  const out: X509Bundle = { trustDomain, x509Authorities: checkAuthorities(ders, trustDomain, what) };
  if (d.spiffe_sequence !== undefined) {
    if (
      typeof d.spiffe_sequence !== 'number' ||
      !Number.isInteger(d.spiffe_sequence) ||
      d.spiffe_sequence < 0
    ) {
      throw new BundleError(`${what}: spiffe_sequence must be a non-negative integer`);
    }
    out.sequence = d.spiffe_sequence;
  }
  if (d.spiffe_refresh_hint !== undefined) {
    if (typeof d.spiffe_refresh_hint !== 'number' || !(d.spiffe_refresh_hint >= 0)) {
      throw new BundleError(`${what}: spiffe_refresh_hint must be a non-negative number`);
    }
    out.refreshHintSeconds = d.spiffe_refresh_hint;
  }
  return out;
}

/**
 * Write a bundle in SPIFFE JWKS form (x509-svid entries only). Each entry carries the public key
 * parameters of its certificate (kty, crv/x/y or n/e) as JWK requires, so that other SPIFFE
 * implementations can read it.
 */
export function formatJwksBundle(bundle: X509Bundle): string {
  const doc: Record<string, unknown> = {
    keys: bundle.x509Authorities.map((d) => ({
      use: 'x509-svid',
      ...publicJwk(d),
      x5c: [d.toString('base64')],
    })),
  };
  if (bundle.sequence !== undefined) doc.spiffe_sequence = bundle.sequence;
  if (bundle.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = bundle.refreshHintSeconds;
  return `${JSON.stringify(doc, null, 2)}\n`;
}

const KEY_PARAMS = ['kty', 'crv', 'x', 'y', 'n', 'e'] as const;

/** The public key of a certificate as JWK members (kty and its key parameters). */
function publicJwk(der: Buffer): Record<string, string> {
  const jwk = parseCertificate(der).x509.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const k of KEY_PARAMS) if (typeof jwk[k] === 'string') out[k] = jwk[k];
  return out;
}

/** Why the key parameters of a JWKS entry contradict its certificate, if they do. */
function keyParamsMismatch(entry: Record<string, unknown>, der: Buffer): string | undefined {
  if (!KEY_PARAMS.some((k) => entry[k] !== undefined)) return undefined;
  let actual: Record<string, string>;
  try {
    actual = publicJwk(der);
  } catch {
    // Reported as an invalid certificate by the caller.
    return undefined;
  }
  for (const k of KEY_PARAMS) {
    const given = entry[k];
    if (given === undefined) continue;
    const same =
      k === 'kty' || k === 'crv'
        ? given === actual[k]
        : typeof given === 'string' && sameInteger(given, actual[k]);
    if (!same) return `"${k}" does not match the public key of its x5c certificate`;
  }
  return undefined;
}

/** Two base64url big-endian integers are equal (leading zero bytes do not count). */
function sameInteger(a: string, b: string | undefined): boolean {
  if (b === undefined) return false;
  const strip = (t: string): Buffer => {
    const buf = Buffer.from(t, 'base64url');
    let i = 0;
    while (i < buf.length - 1 && buf[i] === 0) i++;
    return buf.subarray(i);
  };
  return strip(a).equals(strip(b));
}
