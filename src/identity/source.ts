import type { KeyObject, X509Certificate } from 'node:crypto';

/**
 * An X509-SVID with its private key, as the handshake presents it.
 * chain[0] is the leaf; the rest are intermediates (not the root).
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

/** Trust bundles: trust domain name (e.g. "demo.local") -> DER CA certificates. */
export type TrustBundles = ReadonlyMap<string, readonly Buffer[]>;

export type IdentityEvent =
  /** A new or renewed SVID is available for spiffeId. */
  | { type: 'svid-updated'; spiffeId: string; svid: Svid; previousNotAfter?: Date }
  /** The source no longer holds an SVID for spiffeId (workload left, entry deleted, PermissionDenied). */
  | { type: 'svid-removed'; spiffeId: string; reason: string }
  /** Trust bundles changed (complete new state). */
  | { type: 'bundles-updated'; bundles: TrustBundles }
  /** The source lost or regained its upstream (SPIRE agent, files). */
  | { type: 'source-state'; state: 'connected' | 'disconnected' | 'no-identity'; detail: string };

/**
 * Where the daemon gets SVIDs for the workloads on its node and the trust bundles.
 * Implementations: embedded dev CA, SPIRE Delegated Identity API, SPIFFE Workload API, files.
 */
export interface IdentitySource {
  readonly kind: 'dev-ca' | 'spire-delegated' | 'workload-api' | 'files';
  /** Start fetching SVIDs for these SPIFFE IDs (the workloads on this node); stop for any others. */
  setWanted(spiffeIds: readonly string[]): void;
  /** Current SVID for a SPIFFE ID, if held and not expired. */
  svid(spiffeId: string): Svid | undefined;
  /** Current trust bundles. */
  bundles(): TrustBundles;
  /** Rotation is an event stream. Returns an unsubscribe function. */
  subscribe(listener: (event: IdentityEvent) => void): () => void;
  /** Resolves when the first complete state is available (or rejects with a clear error). */
  ready(): Promise<void>;
  close(): Promise<void>;
}
