import type { AuthKey } from '../datapath/index.js';

/** Stable string form of an auth key, used for maps and logs: "local:remote@node/type". */
export function pairKey(k: AuthKey): string {
  return `${k.localId}:${k.remoteId}@${k.remoteNode}/${k.authType}`;
}

export function sameKey(a: AuthKey, b: AuthKey): boolean {
  return (
    a.localId === b.localId &&
    a.remoteId === b.remoteId &&
    a.remoteNode === b.remoteNode &&
    a.authType === b.authType
  );
}

/** The names behind a pair's numeric handles; a field is missing when its handle is unknown. */
export interface PairNames {
  localId?: string | undefined;
  remoteId?: string | undefined;
  node?: string | undefined;
}

/** Handles to names, through the allocators behind a resolver (audit events, logs, the API). */
export function pairNames(
  resolver: {
    spiffeIdOf(numericId: number): string | undefined;
    nodeNameOf(nodeId: number): string | undefined;
  },
  key: AuthKey,
): PairNames {
  return {
    localId: resolver.spiffeIdOf(key.localId),
    remoteId: resolver.spiffeIdOf(key.remoteId),
    node: resolver.nodeNameOf(key.remoteNode),
  };
}
