import { MeshauthError } from '../errors.js';

/** A string that is not a valid SPIFFE ID or trust domain. */
export class SpiffeIdError extends MeshauthError {
  constructor(message: string) {
    super('MESHAUTH_ERR_SPIFFE_ID', message);
  }
}

/** Stable reasons an X509-SVID is rejected; they appear in audit events and metrics. */
export type X509SvidReason =
  | 'malformed'
  | 'empty-chain'
  | 'no-uri-san'
  | 'multiple-uri-sans'
  | 'invalid-spiffe-id'
  | 'root-path'
  | 'leaf-is-ca'
  | 'no-key-usage'
  | 'no-digital-signature'
  | 'leaf-key-cert-sign'
  | 'leaf-crl-sign'
  | 'bad-eku'
  | 'no-bundle'
  | 'untrusted'
  | 'expired'
  | 'not-yet-valid'
  | 'bad-intermediate'
  | 'key-mismatch'
  // a certificate of the chain or bundle whose SubjectPublicKeyInfo does not parse (PublicKeyError)
  | 'bad-public-key'
  // RFC 5280 path validation refusals (reported by OpenSSL, see src/spiffe/openssl.ts):
  | 'bad-signature'
  | 'unhandled-critical-extension'
  | 'invalid-extension'
  | 'name-constraints'
  | 'policy'
  | 'invalid-purpose'
  | 'weak-crypto'
  | 'path-validation';

/** An X509-SVID that failed parsing or verification. `reason` is stable; the message explains. */
export class X509SvidError extends MeshauthError {
  readonly reason: X509SvidReason;
  /** For path validation refusals: OpenSSL's X509_V_ERR_* number and the depth it was found at. */
  readonly details: Readonly<{ opensslError?: number; depth?: number }>;

  constructor(
    reason: X509SvidReason,
    message: string,
    options?: { cause?: unknown; details?: { opensslError?: number; depth?: number } },
  ) {
    super(
      'MESHAUTH_ERR_X509_SVID',
      message,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.reason = reason;
    this.details = options?.details ?? {};
  }
}

/**
 * A certificate whose SubjectPublicKeyInfo (RFC 5280 4.1.2.7) does not parse as a public key: a
 * garbled or unsupported key (an EC point off its curve, an unknown curve or algorithm). The
 * certificate itself may parse; nothing signed by the key can be checked.
 */
export class PublicKeyError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_PUBLIC_KEY', message, options);
  }
}

/** A trust bundle that cannot be parsed or is unusable. */
export class BundleError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_BUNDLE', message, options);
  }
}
