import type { KeyObject, X509Certificate } from 'node:crypto';

/**
 * An X509-SVID with its private key, as a TLS handshake presents it (SPIFFE X509-SVID standard).
 * chain[0] is the leaf; the rest are intermediates (never the trust bundle's root).
 */
export interface Svid {
  /** SPIFFE ID string, e.g. spiffe://demo.local/ns/demo/sa/web */
  spiffeId: string;
  /** DER certificates, leaf first. */
  chainDer: Buffer[];
  /** PEM of the same chain (convenient for node:tls). */
  chainPem: string;
  /** The private key of the leaf. */
  key: KeyObject;
  /** PEM (PKCS#8) of the key. */
  keyPem: string;
  leaf: X509Certificate;
  notBefore: Date;
  notAfter: Date;
}

/** X.509 trust bundles: trust domain name (e.g. "demo.local") -> DER CA certificates. */
export type TrustBundles = ReadonlyMap<string, readonly Buffer[]>;
