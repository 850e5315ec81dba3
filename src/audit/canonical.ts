import { hash } from 'node:crypto';

/** prev_hash of the very first row of a fresh chain. */
export const GENESIS_HASH = Buffer.alloc(32);

/** The hashed fields of one row, exactly as stored. */
export interface ChainFields {
  seq: number;
  prevHash: Buffer;
  ts: number;
  type: string;
  outcome: string | null;
  reason: string | null;
  localId: string | null;
  remoteId: string | null;
  node: string | null;
  direction: string | null;
  /** The stored details text (canonical JSON) or null. */
  details: string | null;
}

/**
 * JSON with object keys sorted at every level, so equal values always give equal text.
 * Non-finite numbers become null, undefined members are dropped (as JSON.stringify does).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return typeof v === 'bigint' ? v.toString() : v;
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v instanceof Date) return v.toISOString();
  if (Buffer.isBuffer(v)) return v.toString('hex');
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
  return out;
}

/**
 * hash = SHA-256 over the canonical encoding of one row: a JSON array, in this fixed order, of
 * [version 1, seq, prev_hash hex, ts, type, outcome, reason, local_id, remote_id, node, direction,
 * details text]; absent columns are null. JSON string escaping makes the encoding unambiguous.
 */
export function rowHash(f: ChainFields): Buffer {
  const enc = JSON.stringify([
    1,
    f.seq,
    f.prevHash.toString('hex'),
    f.ts,
    f.type,
    f.outcome,
    f.reason,
    f.localId,
    f.remoteId,
    f.node,
    f.direction,
    f.details,
  ]);
  return hash('sha256', enc, 'buffer');
}
