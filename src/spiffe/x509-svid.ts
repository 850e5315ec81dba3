import type { KeyObject, X509Certificate } from 'node:crypto';
import type { TrustBundles } from './svid.js';
import {
  OID_CLIENT_AUTH,
  OID_SERVER_AUTH,
  parseCertificate,
  parseCertificates,
  type ParsedCertificate,
} from './certificate.js';
import { systemClock } from '../time.js';
import { PublicKeyError, X509SvidError, type X509SvidReason } from './errors.js';
import { parseSpiffeId, type SpiffeId } from './id.js';
import { validatePath, X509_V, type CertRef, type PathResult } from './openssl.js';

/** An X509-SVID that passed verification. */
export interface VerifiedX509Svid {
  spiffeId: SpiffeId;
  leaf: X509Certificate;
  /** The presented chain, leaf first. */
  chain: X509Certificate[];
  /** Serial numbers (upper-case hex), leaf first. */
  serials: string[];
  /** Validity of the leaf. */
  notBefore: Date;
  notAfter: Date;
  /** Earliest notAfter over the validated path: the leaf, the intermediates used and the trust anchor. */
  chainNotAfter: Date;
  /** The validated path (RFC 5280 §6.1), leaf first, ending with the bundle authority it chains to. */
  path: X509Certificate[];
  /** DER of the bundle authority (trust anchor) the path ends at. */
  anchorDer: Buffer;
}

/**
 * Options of a verification. X509SvidVerifier (verify-cache.ts) keys its cache on every option
 * except `now`: a new option that changes the verdict must be added to its key.
 */
export interface VerifyX509SvidOptions {
  /** Time at which validity is checked (default: now). */
  now?: Date;
  /** Longest chain accepted (leaf + intermediates). Default 8. */
  maxChainLength?: number;
}

const cache = new WeakMap<Buffer, ParsedCertificate>();

/**
 * One certificate of an X509-SVID chain or bundle, `what` naming it in messages ("leaf", "chain
 * certificate 1"). Throws X509SvidError: `bad-public-key` when only its public key is unusable,
 * `malformed` otherwise.
 */
export function parseSvidCertificate(der: Buffer, what: string): ParsedCertificate {
  const hit = cache.get(der);
  if (hit) return hit;
  try {
    const p = parseCertificate(der);
    cache.set(der, p);
    return p;
  } catch (err) {
    if (err instanceof PublicKeyError)
      throw new X509SvidError(
        'bad-public-key',
        `verify X509-SVID: ${what} has an unusable public key: ${err.message}`,
        { cause: err },
      );
    throw new X509SvidError(
      'malformed',
      `verify X509-SVID: ${what} is not a valid certificate: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** Check the leaf-only rules of the X509-SVID standard and return its SPIFFE ID. */
export function checkLeaf(leaf: ParsedCertificate): SpiffeId {
  const { ext } = leaf;
  if (ext.uriSans.length === 0)
    throw new X509SvidError('no-uri-san', 'verify X509-SVID: leaf has no URI SAN');
  if (ext.uriSans.length > 1) {
    throw new X509SvidError(
      'multiple-uri-sans',
      `verify X509-SVID: leaf has ${ext.uriSans.length} URI SANs; exactly one is allowed`,
    );
  }
  let id: SpiffeId;
  try {
    id = parseSpiffeId(ext.uriSans[0]!);
  } catch (err) {
    throw new X509SvidError(
      'invalid-spiffe-id',
      `verify X509-SVID: leaf URI SAN is not a SPIFFE ID: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (id.isRoot) throw new X509SvidError('root-path', `verify X509-SVID: leaf SPIFFE ID ${id} has no path`);
  if (ext.basicConstraints?.ca || leaf.x509.ca)
    throw new X509SvidError('leaf-is-ca', 'verify X509-SVID: leaf is a CA certificate (cA=true)');
  if (!ext.keyUsage)
    throw new X509SvidError('no-key-usage', 'verify X509-SVID: leaf has no KeyUsage extension');
  if (!ext.keyUsage.has('digitalSignature')) {
    throw new X509SvidError('no-digital-signature', 'verify X509-SVID: leaf KeyUsage lacks digitalSignature');
  }
  if (ext.keyUsage.has('keyCertSign'))
    throw new X509SvidError('leaf-key-cert-sign', 'verify X509-SVID: leaf KeyUsage has keyCertSign');
  if (ext.keyUsage.has('cRLSign'))
    throw new X509SvidError('leaf-crl-sign', 'verify X509-SVID: leaf KeyUsage has cRLSign');
  if (
    ext.extKeyUsage &&
    !(ext.extKeyUsage.includes(OID_SERVER_AUTH) && ext.extKeyUsage.includes(OID_CLIENT_AUTH))
  ) {
    throw new X509SvidError(
      'bad-eku',
      'verify X509-SVID: leaf ExtendedKeyUsage must include serverAuth and clientAuth',
    );
  }
  return id;
}

/** A signing certificate that carries a SPIFFE ID must name a trust domain, not a workload. */
function signerIdProblem(c: ParsedCertificate): string | undefined {
  for (const uri of c.ext.uriSans) {
    if (!uri.startsWith('spiffe://')) continue;
    const rest = uri.slice('spiffe://'.length);
    if (rest.includes('/')) return `carries the workload SPIFFE ID ${uri}`;
  }
  return undefined;
}

/** OpenSSL refusals about a certificate's fitness as a CA (RFC 5280 §4.2.1.3, §4.2.1.9, §6.1.4). */
const CA_PROBLEMS: ReadonlySet<number> = new Set([
  X509_V.INVALID_CA,
  X509_V.KEYUSAGE_NO_CERTSIGN,
  X509_V.INVALID_NON_CA,
  X509_V.CA_CERT_MISSING_KEY_USAGE,
  X509_V.CA_BCONS_NOT_CRITICAL,
  X509_V.PATHLEN_WITHOUT_KU_KEY_CERT_SIGN,
  X509_V.KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA,
  X509_V.PATHLEN_INVALID_FOR_NON_CA,
]);

/** OpenSSL codes for "no path to a trust anchor". */
const NO_PATH: ReadonlySet<number> = new Set([
  X509_V.UNABLE_TO_GET_ISSUER_CERT,
  X509_V.UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
  X509_V.UNABLE_TO_VERIFY_LEAF_SIGNATURE,
  X509_V.DEPTH_ZERO_SELF_SIGNED_CERT,
  X509_V.SELF_SIGNED_CERT_IN_CHAIN,
  X509_V.CERT_UNTRUSTED,
  X509_V.CERT_REJECTED,
  X509_V.CERT_CHAIN_TOO_LONG,
  X509_V.PATH_LOOP,
]);

/** The stable meshauth reason for an OpenSSL verification error about a certificate of kind `kind`. */
export function reasonForOpensslError(code: number, kind: CertRef['kind'] | undefined): X509SvidReason {
  if (code === -1) return 'malformed';
  if (code === X509_V.CERT_HAS_EXPIRED) return 'expired';
  if (code === X509_V.CERT_NOT_YET_VALID) return 'not-yet-valid';
  if (NO_PATH.has(code)) return 'untrusted';
  // Too many intermediates below a CA: whichever certificate carried the constraint.
  if (code === X509_V.PATH_LENGTH_EXCEEDED) return 'bad-intermediate';
  if (CA_PROBLEMS.has(code))
    return kind === 'anchor' ? 'untrusted' : kind === 'leaf' ? 'invalid-extension' : 'bad-intermediate';
  switch (code) {
    case X509_V.UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V.UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V.CERT_SIGNATURE_FAILURE:
    case X509_V.NO_ISSUER_PUBLIC_KEY:
    case X509_V.UNSUPPORTED_SIGNATURE_ALGORITHM:
    case X509_V.SIGNATURE_ALGORITHM_MISMATCH:
    case X509_V.SIGNATURE_ALGORITHM_INCONSISTENCY:
      return 'bad-signature';
    case X509_V.UNHANDLED_CRITICAL_EXTENSION:
      return 'unhandled-critical-extension';
    case X509_V.INVALID_EXTENSION:
    case X509_V.UNSUPPORTED_EXTENSION_FEATURE:
    case X509_V.PROXY_CERTIFICATES_NOT_ALLOWED:
    case X509_V.MISSING_AUTHORITY_KEY_IDENTIFIER:
    case X509_V.MISSING_SUBJECT_KEY_IDENTIFIER:
    case X509_V.EMPTY_SUBJECT_ALT_NAME:
    case X509_V.EMPTY_SUBJECT_SAN_NOT_CRITICAL:
    case X509_V.AUTHORITY_KEY_IDENTIFIER_CRITICAL:
    case X509_V.SUBJECT_KEY_IDENTIFIER_CRITICAL:
    case X509_V.EXTENSIONS_REQUIRE_VERSION_3:
    case X509_V.KEYUSAGE_NO_DIGITAL_SIGNATURE:
      return 'invalid-extension';
    case X509_V.ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V.ERROR_IN_CERT_NOT_AFTER_FIELD:
    case X509_V.ISSUER_NAME_EMPTY:
    case X509_V.SUBJECT_NAME_EMPTY:
    case X509_V.EC_KEY_EXPLICIT_PARAMS:
      return 'malformed';
    case X509_V.PERMITTED_VIOLATION:
    case X509_V.EXCLUDED_VIOLATION:
    case X509_V.SUBTREE_MINMAX:
    case X509_V.UNSUPPORTED_CONSTRAINT_TYPE:
    case X509_V.UNSUPPORTED_CONSTRAINT_SYNTAX:
    case X509_V.UNSUPPORTED_NAME_SYNTAX:
      return 'name-constraints';
    case X509_V.INVALID_POLICY_EXTENSION:
    case X509_V.NO_EXPLICIT_POLICY:
      return 'policy';
    case X509_V.INVALID_PURPOSE:
      return 'invalid-purpose';
    case X509_V.EE_KEY_TOO_SMALL:
    case X509_V.CA_KEY_TOO_SMALL:
    case X509_V.CA_MD_TOO_WEAK:
      return 'weak-crypto';
    default:
      return 'path-validation';
  }
}

/**
 * Verify an X509-SVID chain (leaf FIRST, then intermediates in any order) against the X.509
 * authorities of the bundle for the leaf's own trust domain (SPIFFE X509-SVID §4, §5).
 *
 * In order: the leaf rules of the X509-SVID standard (checkLeaf, stable reasons such as
 * `multiple-uri-sans`); RFC 5280 §6.1 path validation by OpenSSL on every certificate of the path
 * (src/spiffe/openssl.ts: strict profile, unknown critical extensions, basic constraints, key
 * usage, path length, name constraints, policies, signatures, validity at `now`, TLS client and
 * server purpose); then the signing-certificate rule (a CA certificate that carries a SPIFFE ID has
 * no path). Fails closed: any problem throws X509SvidError with a stable `reason`; the message
 * names the certificate and, for OpenSSL refusals, OpenSSL's error number and text.
 * Validity follows OpenSSL (X509_cmp_time): a certificate is valid from notBefore up to, not
 * including, its notAfter second.
 */
export function verifyX509Svid(
  chainInput: readonly Buffer[] | Buffer,
  bundles: TrustBundles,
  opts: VerifyX509SvidOptions = {},
): VerifiedX509Svid {
  const now = opts.now ?? new Date(systemClock.now());
  const maxLen = opts.maxChainLength ?? 8;
  let ders: readonly Buffer[];
  if (Buffer.isBuffer(chainInput)) {
    try {
      ders = parseCertificates(chainInput);
    } catch (err) {
      throw new X509SvidError(
        'malformed',
        `verify X509-SVID: chain is not DER or PEM: ${(err as Error).message}`,
        { cause: err },
      );
    }
  } else {
    ders = chainInput;
  }
  if (ders.length === 0) throw new X509SvidError('empty-chain', 'verify X509-SVID: the chain is empty');
  if (ders.length > maxLen)
    throw new X509SvidError(
      'malformed',
      `verify X509-SVID: chain has ${ders.length} certificates (max ${maxLen})`,
    );
  const chain = ders.map((d, i) => parseSvidCertificate(d, i === 0 ? 'leaf' : `chain certificate ${i}`));
  const leaf = chain[0]!;
  const id = checkLeaf(leaf);

  const td = id.trustDomain.name;
  const authorityDers = bundles.get(td);
  if (!authorityDers || authorityDers.length === 0) {
    throw new X509SvidError('no-bundle', `verify X509-SVID: no trust bundle for trust domain "${td}"`);
  }
  const authorities = authorityDers.map((d, i) => parseSvidCertificate(d, `bundle authority ${i} of ${td}`));

  let result: PathResult;
  try {
    result = validatePath({
      leaf: leaf.der,
      untrusted: chain.slice(1).map((c) => c.der),
      anchors: authorities.map((a) => a.der),
      atSeconds: Math.floor(now.getTime() / 1000),
      maxDepth: maxLen,
    });
  } catch (err) {
    throw new X509SvidError('path-validation', `verify X509-SVID: ${(err as Error).message}`, { cause: err });
  }
  const certOf = (ref: CertRef): ParsedCertificate =>
    ref.kind === 'leaf' ? leaf : ref.kind === 'untrusted' ? chain[ref.index + 1]! : authorities[ref.index]!;
  const nameOf = (ref: CertRef | undefined): string => {
    if (!ref) return 'a certificate of the path';
    if (ref.kind === 'leaf') return 'leaf';
    if (ref.kind === 'untrusted') return `intermediate ${ref.index + 1}`;
    const subject = authorities[ref.index]!.x509.subject.replace(/\n/g, ', ');
    return `trust anchor "${subject}" of the "${td}" bundle`;
  };

  if (!result.ok) {
    const reason = reasonForOpensslError(result.code, result.cert?.kind);
    const what = nameOf(result.cert);
    const openssl = `(OpenSSL error ${result.code})`;
    let message: string;
    if (reason === 'untrusted' && NO_PATH.has(result.code)) {
      message = `${id} does not chain to an authority of the "${td}" bundle (OpenSSL error ${result.code}: ${result.text})`;
    } else if (reason === 'expired' && result.cert) {
      message = `${what} expired at ${new Date(certOf(result.cert).x509.validTo).toISOString()}`;
    } else if (reason === 'not-yet-valid' && result.cert) {
      message = `${what} is not valid before ${new Date(certOf(result.cert).x509.validFrom).toISOString()}`;
    } else {
      message = `${what}: ${result.text} ${openssl}`;
    }
    throw new X509SvidError(reason, `verify X509-SVID: ${message}`, {
      details: { opensslError: result.code, depth: result.depth },
    });
  }

  // SPIFFE X509-SVID §4.1: a signing certificate carrying a SPIFFE ID names its trust domain only.
  for (const ref of result.path.slice(1)) {
    const problem = signerIdProblem(certOf(ref));
    if (problem) throw new X509SvidError('bad-intermediate', `verify X509-SVID: ${nameOf(ref)} ${problem}`);
  }

  const path = result.path.map(certOf);
  let chainNotAfter = new Date(leaf.x509.validTo);
  for (const c of path) {
    const na = new Date(c.x509.validTo);
    if (na < chainNotAfter) chainNotAfter = na;
  }
  const anchor = path[path.length - 1]!;
  return {
    spiffeId: id,
    leaf: leaf.x509,
    chain: chain.map((c) => c.x509),
    serials: chain.map((c) => c.x509.serialNumber.toUpperCase()),
    notBefore: new Date(leaf.x509.validFrom),
    notAfter: new Date(leaf.x509.validTo),
    chainNotAfter,
    path: path.map((c) => c.x509),
    anchorDer: anchor.der,
  };
}

/** True when the private key belongs to the leaf of the chain (signs and verifies a probe). */
export function keyMatchesLeaf(key: KeyObject, leaf: X509Certificate): boolean {
  try {
    return leaf.checkPrivateKey(key);
  } catch {
    return false;
  }
}
