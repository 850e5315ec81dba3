import type { KeyObject, X509Certificate } from 'node:crypto';
import type { TrustBundles } from './svid.js';
import {
  OID_CLIENT_AUTH,
  OID_SERVER_AUTH,
  parseCertificate,
  parseCertificates,
  type ParsedCertificate,
} from './certificate.js';
import { X509SvidError } from './errors.js';
import { parseSpiffeId, type SpiffeId } from './id.js';

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
  /** Earliest notAfter over the leaf, the intermediates used and the trust anchor. */
  chainNotAfter: Date;
}

export interface VerifyX509SvidOptions {
  /** Time at which validity is checked (default: now). */
  now?: Date;
  /** Longest chain accepted (leaf + intermediates). Default 8. */
  maxChainLength?: number;
}

const cache = new WeakMap<Buffer, ParsedCertificate>();

function parse(der: Buffer, what: string): ParsedCertificate {
  const hit = cache.get(der);
  if (hit) return hit;
  try {
    const p = parseCertificate(der);
    cache.set(der, p);
    return p;
  } catch (err) {
    throw new X509SvidError(
      'malformed',
      `verify X509-SVID: ${what} is not a valid certificate: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

function checkValidity(c: ParsedCertificate, what: string, now: Date): void {
  const nb = new Date(c.x509.validFrom);
  const na = new Date(c.x509.validTo);
  if (now < nb) {
    throw new X509SvidError(
      'not-yet-valid',
      `verify X509-SVID: ${what} is not valid before ${nb.toISOString()}`,
    );
  }
  if (now > na)
    throw new X509SvidError('expired', `verify X509-SVID: ${what} expired at ${na.toISOString()}`);
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

function isSigningCert(c: ParsedCertificate): boolean {
  const bc = c.ext.basicConstraints;
  if (!bc?.ca) return false;
  return c.ext.keyUsage === undefined || c.ext.keyUsage.has('keyCertSign');
}

/**
 * True when `parent` signed `child`: the names chain and the signature verifies. Deliberately
 * ignores the parent's KeyUsage and BasicConstraints (OpenSSL's checkIssued refuses a parent
 * without keyCertSign), so that a non-CA signer is reported as such rather than as "untrusted".
 */
function issued(child: ParsedCertificate, parent: ParsedCertificate): boolean {
  try {
    const namesChain = child.x509.issuer === parent.x509.subject || child.x509.checkIssued(parent.x509);
    return namesChain && child.x509.verify(parent.x509.publicKey);
  } catch {
    return false;
  }
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

/**
 * Verify an X509-SVID chain (leaf FIRST, then intermediates) against the X.509 authorities of the
 * bundle for the leaf's own trust domain. Fails closed: any problem throws X509SvidError with a
 * stable `reason`.
 */
export function verifyX509Svid(
  chainInput: readonly Buffer[] | Buffer,
  bundles: TrustBundles,
  opts: VerifyX509SvidOptions = {},
): VerifiedX509Svid {
  const now = opts.now ?? new Date();
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
  const chain = ders.map((d, i) => parse(d, i === 0 ? 'leaf' : `chain certificate ${i}`));
  const leaf = chain[0]!;
  const id = checkLeaf(leaf);
  checkValidity(leaf, 'leaf', now);

  const td = id.trustDomain.name;
  const authorityDers = bundles.get(td);
  if (!authorityDers || authorityDers.length === 0) {
    throw new X509SvidError('no-bundle', `verify X509-SVID: no trust bundle for trust domain "${td}"`);
  }
  const authorities = authorityDers.map((d, i) => parse(d, `bundle authority ${i} of ${td}`));

  // Walk up from the leaf: prefer a bundle authority, else an unused presented intermediate.
  let current = leaf;
  let chainNotAfter = new Date(leaf.x509.validTo);
  const used = new Set<number>([0]);
  for (let depth = 0; depth < maxLen; depth++) {
    const anchor = authorities.find((a) => issued(current, a));
    if (anchor) {
      const anchorName = `trust anchor "${anchor.x509.subject.replace(/\n/g, ', ')}"`;
      if (!isSigningCert(anchor)) {
        throw new X509SvidError(
          'untrusted',
          `verify X509-SVID: ${anchorName} of the "${td}" bundle is not a CA with keyCertSign`,
        );
      }
      checkValidity(anchor, anchorName, now);
      const anchorPathLen = anchor.ext.basicConstraints?.pathLen;
      if (anchorPathLen !== undefined && used.size - 1 > anchorPathLen) {
        throw new X509SvidError(
          'bad-intermediate',
          `verify X509-SVID: ${used.size - 1} intermediates exceed the path length constraint ${anchorPathLen} of ${anchorName}`,
        );
      }
      const na = new Date(anchor.x509.validTo);
      if (na < chainNotAfter) chainNotAfter = na;
      return {
        spiffeId: id,
        leaf: leaf.x509,
        chain: chain.map((c) => c.x509),
        serials: chain.map((c) => c.x509.serialNumber.toUpperCase()),
        notBefore: new Date(leaf.x509.validFrom),
        notAfter: new Date(leaf.x509.validTo),
        chainNotAfter,
      };
    }
    const idx = chain.findIndex((c, i) => !used.has(i) && issued(current, c));
    if (idx < 0) break;
    const inter = chain[idx]!;
    if (!isSigningCert(inter)) {
      throw new X509SvidError(
        'bad-intermediate',
        `verify X509-SVID: chain certificate ${idx} signed the chain but is not a CA with keyCertSign`,
      );
    }
    const idProblem = signerIdProblem(inter);
    if (idProblem)
      throw new X509SvidError('bad-intermediate', `verify X509-SVID: chain certificate ${idx} ${idProblem}`);
    checkValidity(inter, `intermediate ${idx}`, now);
    const pathLen = inter.ext.basicConstraints?.pathLen;
    // Number of intermediates below this one.
    if (pathLen !== undefined && used.size - 1 > pathLen) {
      throw new X509SvidError(
        'bad-intermediate',
        `verify X509-SVID: intermediate ${idx} path length constraint ${pathLen} exceeded`,
      );
    }
    const na = new Date(inter.x509.validTo);
    if (na < chainNotAfter) chainNotAfter = na;
    used.add(idx);
    current = inter;
  }
  throw new X509SvidError(
    'untrusted',
    `verify X509-SVID: ${id} does not chain to an authority of the "${td}" bundle`,
  );
}

/** True when the private key belongs to the leaf of the chain (signs and verifies a probe). */
export function keyMatchesLeaf(key: KeyObject, leaf: X509Certificate): boolean {
  try {
    return leaf.checkPrivateKey(key);
  } catch {
    return false;
  }
}
