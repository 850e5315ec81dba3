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
