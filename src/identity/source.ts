import type { Svid, TrustBundles } from '../spiffe/index.js';

export type IdentityEvent =
  /** A new or renewed SVID is available for spiffeId. */
  | { type: 'svid-updated'; spiffeId: string; svid: Svid; previousNotAfter?: Date }
  /** The source no longer holds an SVID for spiffeId (workload left, entry deleted, PermissionDenied). */
  | { type: 'svid-removed'; spiffeId: string; reason: string }
  /** Trust bundles changed (complete new state). */
  | { type: 'bundles-updated'; bundles: TrustBundles }
  /** The source lost or regained its upstream (SPIRE agent, files). */
  | { type: 'source-state'; state: 'connected' | 'disconnected' | 'no-identity'; detail: string };

/** Which kind of identity source it is (the `identity.source` configuration value). */
export type IdentitySourceKind = 'dev-ca' | 'spire-delegated' | 'workload-api' | 'files';

/**
 * Where the daemon gets SVIDs for the workloads on its node and the trust bundles.
 * Implementations: embedded dev CA, SPIRE Delegated Identity API, SPIFFE Workload API, files.
 */
export interface IdentitySource {
  readonly kind: IdentitySourceKind;
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
