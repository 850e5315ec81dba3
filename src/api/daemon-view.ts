/**
 * What the API needs from the running daemon. The daemon implements it; the API only reads through
 * it (and asks it to flush entries).
 */

/** One live authentication entry, with numeric handles resolved to names. */
export interface EntryView {
  localId: string;
  remoteId: string;
  /** Remote node name ('' = this node). */
  remoteNode: string;
  localIdentity: number;
  remoteIdentity: number;
  remoteNodeId: number;
  authType: number;
  /** Wall-clock expiry, ms since epoch. */
  expiresAtMs: number;
}

export interface StatusView {
  version: string;
  /** This node's name. */
  node: string;
  startedAtMs: number;
  datapath: { attached: boolean; mode: string; detail?: string };
  identitySource: { kind: string; connected: boolean; detail?: string };
  /** Identities this node holds SVIDs for. */
  identities: Array<{ spiffeId: string; notAfterMs?: number }>;
  /** Datapath verdict counters, handshake counters, ... (name → value). */
  counters: Record<string, number>;
  /** Live auth entries. */
  entries: number;
  /** Component versions (node, kernel, SPIRE agent, ...). */
  versions?: Record<string, string>;
}

export type FlushRequest = { all: true } | { localId: string; remoteId: string; node?: string };

export interface DaemonView {
  listEntries(): EntryView[];
  status(): StatusView;
  /** Remove entries; returns how many were removed. */
  flush(req: FlushRequest): number;
}
