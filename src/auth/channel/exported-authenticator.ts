/**
 * TLS Exported Authenticators (RFC 9261) over a TLS 1.3 connection, with the TLS 1.3 wire structs
 * they are made of (RFC 8446 §4.3.2, §4.4).
 *
 * Hand-written on purpose: this is the authentication protocol itself, node:tls does not expose
 * exported authenticators, and no maintained JavaScript library implements RFC 9261. Only the
 * encoding is ours; signatures, HMAC and hashes are node:crypto, the exporter is OpenSSL's
 * (`TLSSocket.exportKeyingMaterial`).
 *
 *   request       = CertificateRequest (13, from the TLS server) or ClientCertificateRequest (17,
 *                   from the TLS client): certificate_request_context + signature_algorithms
 *   HC            = Exporter("EXPORTER-<role> authenticator handshake context", "", Hash.length)
 *   FK            = Exporter("EXPORTER-<role> authenticator finished key",      "", Hash.length)
 *   Certificate   = Handshake(11, request context, chain)                             RFC 8446 §4.4.2
 *   CertificateVerify = Handshake(15, scheme, Sign(0x20 * 64 || "Exported Authenticator" || 0x00
 *                        || Hash(HC || request || Certificate)))                      RFC 9261 §5.2.2
 *   Finished      = Handshake(20, HMAC(FK, Hash(HC || request || Certificate || CertificateVerify)))
 *   authenticator = Certificate || CertificateVerify || Finished                      RFC 9261 §5.2.4
 *
 * <role> is the TLS role of the side that creates the authenticator ("client" or "server"), so an
 * authenticator can neither be reflected to its creator nor replayed on another connection: HC and
 * FK are secrets of this connection (RFC 8446 §7.5).
 */
import {
  createHash,
  createHmac,
  sign as cryptoSign,
  timingSafeEqual,
  verify as cryptoVerify,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';

export const HANDSHAKE_TYPE = {
  certificate: 11,
  certificateRequest: 13,
  certificateVerify: 15,
  clientCertificateRequest: 17,
  finished: 20,
} as const;

/** signature_algorithms extension (RFC 8446 §4.2.3). */
const EXT_SIGNATURE_ALGORITHMS = 13;

/** SignatureScheme code points meshauth signs and verifies with (RFC 8446 §4.2.3). */
export const SIGNATURE_SCHEME = {
  ecdsa_secp256r1_sha256: 0x0403,
  ecdsa_secp384r1_sha384: 0x0503,
  rsa_pss_rsae_sha256: 0x0804,
  ed25519: 0x0807,
} as const;

const SUPPORTED_SCHEMES = Object.values(SIGNATURE_SCHEME);

/** Longest certificate chain an authenticator may carry (same bound as a TLS peer chain). */
export const MAX_AUTHENTICATOR_CHAIN = 16;
/** certificate_request_context bytes meshauth uses (RFC 9261 §4: unpredictable, unique per connection). */
export const REQUEST_CONTEXT_BYTES = 16;

export type TlsRole = 'client' | 'server';

/** A malformed or unverifiable authenticator; `reason` is a stable code. */
export class AuthenticatorError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'AuthenticatorError';
  }
}

/** What exported authenticators need from the TLS connection. */
export interface AuthenticatorConnection {
  exportKeyingMaterial(length: number, label: string): Buffer;
  /** Hash of the negotiated cipher suite. */
  hash: 'sha256' | 'sha384';
}

/** The hash of a TLS 1.3 cipher suite (RFC 8446 §B.4). */
export function cipherSuiteHash(standardName: string | undefined): 'sha256' | 'sha384' {
  if (standardName === 'TLS_AES_256_GCM_SHA384') return 'sha384';
  if (standardName === 'TLS_AES_128_GCM_SHA256' || standardName === 'TLS_CHACHA20_POLY1305_SHA256')
    return 'sha256';
  throw new AuthenticatorError(
    'tls-version',
    `exported authenticator: unsupported cipher suite ${standardName}`,
  );
}

function hashLength(hash: 'sha256' | 'sha384'): number {
  return hash === 'sha256' ? 32 : 48;
}

function keys(conn: AuthenticatorConnection, creator: TlsRole): { hc: Buffer; fk: Buffer } {
  const n = hashLength(conn.hash);
  return {
    hc: conn.exportKeyingMaterial(n, `EXPORTER-${creator} authenticator handshake context`),
    fk: conn.exportKeyingMaterial(n, `EXPORTER-${creator} authenticator finished key`),
  };
}

// --- TLS presentation-language encoding (RFC 8446 §3) ---

function u8(n: number): Buffer {
  return Buffer.from([n]);
}
function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n, 0);
  return b;
}
function u24(n: number): Buffer {
  const b = Buffer.allocUnsafe(3);
  b.writeUIntBE(n, 0, 3);
  return b;
}
function vec(lenBytes: 1 | 2 | 3, body: Buffer): Buffer {
  const max = 2 ** (8 * lenBytes) - 1;
  if (body.length > max)
    throw new AuthenticatorError('proof-malformed', `vector of ${body.length} bytes too long`);
  const len = lenBytes === 1 ? u8(body.length) : lenBytes === 2 ? u16(body.length) : u24(body.length);
  return Buffer.concat([len, body]);
}
function handshake(type: number, body: Buffer): Buffer {
  return Buffer.concat([u8(type), u24(body.length), body]);
}

/** Bounds-checked reader; every overrun is `proof-malformed`. */
class Reader {
  private pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}
  private need(n: number): void {
    if (this.pos + n > this.buf.length)
      throw new AuthenticatorError('proof-malformed', `${this.what}: truncated at byte ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u24(): number {
    this.need(3);
    const v = this.buf.readUIntBE(this.pos, 3);
    this.pos += 3;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  vec(lenBytes: 1 | 2 | 3): Buffer {
    const n = lenBytes === 1 ? this.u8() : lenBytes === 2 ? this.u16() : this.u24();
    return this.bytes(n);
  }
  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  end(): void {
    if (this.pos !== this.buf.length)
      throw new AuthenticatorError(
        'proof-malformed',
        `${this.what}: ${this.buf.length - this.pos} trailing bytes`,
      );
  }
}

/** One handshake message read from `r`: its type, body, and the exact bytes (header included). */
function readHandshake(r: Reader, buf: Buffer, want: number, what: string): { body: Buffer; raw: Buffer } {
  const start = r.offset;
  const type = r.u8();
  if (type !== want)
    throw new AuthenticatorError('proof-malformed', `${what}: handshake type ${type}, want ${want}`);
  const body = r.vec(3);
  return { body, raw: buf.subarray(start, r.offset) };
}

// --- Authenticator request (RFC 9261 §4) ---

export interface AuthenticatorRequest {
  /** The encoded handshake message, exactly as sent (part of the authenticator's transcript). */
  raw: Buffer;
  context: Buffer;
  schemes: number[];
}

/**
 * A request for the peer's authenticator: CertificateRequest when `requester` is the TLS server,
 * ClientCertificateRequest when it is the TLS client. `context` must be unique per connection.
 */
export function encodeRequest(requester: TlsRole, context: Buffer): AuthenticatorRequest {
  if (context.length === 0 || context.length > 255) throw new RangeError('request context: 1..255 bytes');
  const schemes = Buffer.concat(SUPPORTED_SCHEMES.map(u16));
  const ext = Buffer.concat([u16(EXT_SIGNATURE_ALGORITHMS), vec(2, vec(2, schemes))]);
  const body = Buffer.concat([vec(1, context), vec(2, ext)]);
  const type =
    requester === 'server' ? HANDSHAKE_TYPE.certificateRequest : HANDSHAKE_TYPE.clientCertificateRequest;
  return { raw: handshake(type, body), context, schemes: [...SUPPORTED_SCHEMES] };
}

/** Parse a request the peer (TLS role `requester`) sent. Throws AuthenticatorError proof-malformed. */
export function decodeRequest(requester: TlsRole, raw: Buffer): AuthenticatorRequest {
  const type =
    requester === 'server' ? HANDSHAKE_TYPE.certificateRequest : HANDSHAKE_TYPE.clientCertificateRequest;
  const r = new Reader(raw, 'authenticator request');
  const { body } = readHandshake(r, raw, type, 'authenticator request');
  r.end();
  const b = new Reader(body, 'authenticator request body');
  const context = b.vec(1);
  if (context.length === 0)
    throw new AuthenticatorError('proof-malformed', 'authenticator request: empty context');
  const exts = new Reader(b.vec(2), 'authenticator request extensions');
  b.end();
  let schemes: number[] | undefined;
  const seen = new Set<number>();
  while (exts.remaining > 0) {
    const extType = exts.u16();
    const data = exts.vec(2);
    if (seen.has(extType))
      throw new AuthenticatorError(
        'proof-malformed',
        `authenticator request: duplicate extension ${extType}`,
      );
    seen.add(extType);
    if (extType === EXT_SIGNATURE_ALGORITHMS) {
      const list = new Reader(data, 'signature_algorithms');
      const inner = new Reader(list.vec(2), 'signature_algorithms list');
      list.end();
      schemes = [];
      while (inner.remaining > 0) schemes.push(inner.u16());
    }
  }
  if (!schemes || schemes.length === 0)
    throw new AuthenticatorError('proof-malformed', 'authenticator request: no signature_algorithms');
  return { raw: Buffer.from(raw), context: Buffer.from(context), schemes };
}

// --- Authenticator (RFC 9261 §5) ---

function schemeFor(key: KeyObject): { scheme: number; hash: string | null; pss: boolean } {
  const t = key.asymmetricKeyType;
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1')
      return { scheme: SIGNATURE_SCHEME.ecdsa_secp256r1_sha256, hash: 'sha256', pss: false };
    if (curve === 'secp384r1')
      return { scheme: SIGNATURE_SCHEME.ecdsa_secp384r1_sha384, hash: 'sha384', pss: false };
  }
  if (t === 'rsa') return { scheme: SIGNATURE_SCHEME.rsa_pss_rsae_sha256, hash: 'sha256', pss: true };
  if (t === 'ed25519') return { scheme: SIGNATURE_SCHEME.ed25519, hash: null, pss: false };
  throw new AuthenticatorError(
    'proof-unsupported-key',
    `exported authenticator: no signature scheme for a ${t} key`,
  );
}

function schemeParams(scheme: number): { hash: string | null; pss: boolean } {
  switch (scheme) {
    case SIGNATURE_SCHEME.ecdsa_secp256r1_sha256:
      return { hash: 'sha256', pss: false };
    case SIGNATURE_SCHEME.ecdsa_secp384r1_sha384:
      return { hash: 'sha384', pss: false };
    case SIGNATURE_SCHEME.rsa_pss_rsae_sha256:
      return { hash: 'sha256', pss: true };
    case SIGNATURE_SCHEME.ed25519:
      return { hash: null, pss: false };
    default:
      throw new AuthenticatorError(
        'proof-malformed',
        `CertificateVerify: unsupported signature scheme 0x${scheme.toString(16)}`,
      );
  }
}

const SIGNATURE_PREFIX = Buffer.concat([
  Buffer.alloc(64, 0x20),
  Buffer.from('Exported Authenticator', 'ascii'),
  u8(0),
]);

function signedContent(hash: string, hc: Buffer, request: Buffer, certificate: Buffer): Buffer {
  const th = createHash(hash).update(hc).update(request).update(certificate).digest();
  return Buffer.concat([SIGNATURE_PREFIX, th]);
}

function finishedMac(
  hash: string,
  fk: Buffer,
  hc: Buffer,
  request: Buffer,
  certificate: Buffer,
  cv: Buffer,
): Buffer {
  const th = createHash(hash).update(hc).update(request).update(certificate).update(cv).digest();
  return createHmac(hash, fk).update(th).digest();
}

export interface CreateAuthenticatorInput {
  conn: AuthenticatorConnection;
  /** Our TLS role: we create the authenticator, so the exporter labels are ours. */
  creator: TlsRole;
  request: AuthenticatorRequest;
  /** Our chain, leaf first (DER), and the leaf's private key. */
  chainDer: readonly Buffer[];
  key: KeyObject;
}

/** Build Certificate || CertificateVerify || Finished (RFC 9261 §5.2). One signature. */
export function createAuthenticator(i: CreateAuthenticatorInput): Buffer {
  const { hc, fk } = keys(i.conn, i.creator);
  const entries = i.chainDer.map((der) => Buffer.concat([vec(3, der), vec(2, Buffer.alloc(0))]));
  const certificate = handshake(
    HANDSHAKE_TYPE.certificate,
    Buffer.concat([vec(1, i.request.context), vec(3, Buffer.concat(entries))]),
  );
  const s = schemeFor(i.key);
  if (!i.request.schemes.includes(s.scheme))
    throw new AuthenticatorError(
      'proof-unsupported-key',
      `exported authenticator: the request does not accept scheme 0x${s.scheme.toString(16)}`,
    );
  const content = signedContent(i.conn.hash, hc, i.request.raw, certificate);
  const signature = cryptoSign(
    s.hash,
    content,
    s.pss ? { key: i.key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 } : i.key,
  );
  const certificateVerify = handshake(
    HANDSHAKE_TYPE.certificateVerify,
    Buffer.concat([u16(s.scheme), vec(2, signature)]),
  );
  const finished = handshake(
    HANDSHAKE_TYPE.finished,
    finishedMac(i.conn.hash, fk, hc, i.request.raw, certificate, certificateVerify),
  );
  return Buffer.concat([certificate, certificateVerify, finished]);
}

export interface VerifiedAuthenticator {
  /** The presented chain, leaf first (DER). Path validation is the caller's (X509-SVID rules). */
  chainDer: Buffer[];
  leaf: X509Certificate;
}

/** The certificate_request_context an authenticator answers (to find its request). */
export function authenticatorRequestContext(authenticator: Buffer): Buffer {
  const r = new Reader(authenticator, 'authenticator');
  const { body } = readHandshake(r, authenticator, HANDSHAKE_TYPE.certificate, 'Certificate');
  return Buffer.from(new Reader(body, 'Certificate').vec(1));
}

/**
 * Check an authenticator the peer (TLS role `creator`) made for our `request`: structure, the
 * request context, CertificateVerify under the leaf's key, Finished under this connection's key.
 * Does NOT validate the chain (the caller runs verifyX509Svid). Throws AuthenticatorError:
 * proof-malformed (encoding), proof-context-mismatch, proof-signature-invalid, proof-finished-invalid.
 */
export function verifyAuthenticator(
  conn: AuthenticatorConnection,
  creator: TlsRole,
  request: AuthenticatorRequest,
  authenticator: Buffer,
): VerifiedAuthenticator {
  const r = new Reader(authenticator, 'authenticator');
  const cert = readHandshake(r, authenticator, HANDSHAKE_TYPE.certificate, 'Certificate');
  const cv = readHandshake(r, authenticator, HANDSHAKE_TYPE.certificateVerify, 'CertificateVerify');
  const fin = readHandshake(r, authenticator, HANDSHAKE_TYPE.finished, 'Finished');
  r.end();

  const cr = new Reader(cert.body, 'Certificate');
  const context = cr.vec(1);
  const list = new Reader(cr.vec(3), 'certificate_list');
  cr.end();
  if (!timingSafeLengthEqual(context, request.context))
    throw new AuthenticatorError(
      'proof-context-mismatch',
      "authenticator: certificate_request_context is not the request's",
    );
  const chainDer: Buffer[] = [];
  while (list.remaining > 0) {
    if (chainDer.length >= MAX_AUTHENTICATOR_CHAIN)
      throw new AuthenticatorError(
        'proof-malformed',
        `authenticator: more than ${MAX_AUTHENTICATOR_CHAIN} certificates`,
      );
    const der = list.vec(3);
    if (der.length === 0) throw new AuthenticatorError('proof-malformed', 'authenticator: empty certificate');
    list.vec(2); // CertificateEntry extensions: none requested, ignored
    chainDer.push(Buffer.from(der));
  }
  if (chainDer.length === 0)
    throw new AuthenticatorError('proof-malformed', 'authenticator: empty certificate_list');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chainDer[0]!);
  } catch (err) {
    throw new AuthenticatorError(
      'proof-malformed',
      `authenticator: leaf is not a certificate: ${(err as Error).message}`,
    );
  }

  const cvr = new Reader(cv.body, 'CertificateVerify');
  const scheme = cvr.u16();
  const signature = cvr.vec(2);
  cvr.end();
  if (!request.schemes.includes(scheme))
    throw new AuthenticatorError(
      'proof-malformed',
      `CertificateVerify: scheme 0x${scheme.toString(16)} was not requested`,
    );
  const p = schemeParams(scheme);
  const { hc, fk } = keys(conn, creator);
  const content = signedContent(conn.hash, hc, request.raw, cert.raw);
  let ok: boolean;
  try {
    ok = cryptoVerify(
      p.hash,
      content,
      p.pss ? { key: leaf.publicKey, padding: 6, saltLength: 32 } : leaf.publicKey,
      signature,
    );
  } catch {
    ok = false;
  }
  if (!ok)
    throw new AuthenticatorError(
      'proof-signature-invalid',
      'CertificateVerify: signature does not verify under the leaf key',
    );
  const want = finishedMac(conn.hash, fk, hc, request.raw, cert.raw, cv.raw);
  if (!timingSafeLengthEqual(fin.body, want))
    throw new AuthenticatorError(
      'proof-finished-invalid',
      "Finished: MAC does not verify under this connection's key",
    );
  return { chainDer, leaf };
}

function timingSafeLengthEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
