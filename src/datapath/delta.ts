/**
 * Entry-by-entry difference between two desired states of the ipcache and policy maps, so that a
 * change (one pod, one rule) is written as the few entries it touches rather than a walk and
 * rewrite of whole kernel maps.
 */
import { formatCidr, parseCidr } from './cidr.js';
import type { DatapathDelta, PolicyEntry } from './datapath.js';
import type { IpcacheEntry } from './types.js';

/** Desired content of the ipcache and policy maps. */
export interface MapsState {
  ipcache: readonly IpcacheEntry[];
  policy: readonly PolicyEntry[];
}

/**
 * Canonical text of each prefix text seen, so that diffing two 10,000-entry states does not parse
 * and format 20,000 prefixes per change. Bounded: emptied when it outgrows MAX_CANONICAL.
 * Bad input is not cached (parseCidr throws every time, as before).
 */
const canonicalPrefixes = new Map<string, string>();
const MAX_CANONICAL = 1 << 17;

function canonicalPrefix(text: string): string {
  let c = canonicalPrefixes.get(text);
  if (c === undefined) {
    c = formatCidr(parseCidr(text));
    if (canonicalPrefixes.size >= MAX_CANONICAL) canonicalPrefixes.clear();
    canonicalPrefixes.set(text, c);
  }
  return c;
}

function ipcacheByPrefix(entries: readonly IpcacheEntry[]): Map<string, IpcacheEntry> {
  const m = new Map<string, IpcacheEntry>();
  for (const e of entries) m.set(canonicalPrefix(e.cidr), e);
  return m;
}

function policyByPair(entries: readonly PolicyEntry[]): Map<string, PolicyEntry> {
  const m = new Map<string, PolicyEntry>();
  for (const e of entries) m.set(`${e.localId}:${e.remoteId}`, e);
  return m;
}

/** The writes that turn `prev` into `next` (apply with Datapath.applyDelta). */
export function diffMaps(prev: MapsState, next: MapsState): DatapathDelta {
  const a = ipcacheByPrefix(prev.ipcache);
  const b = ipcacheByPrefix(next.ipcache);
  const ipcacheUpsert: IpcacheEntry[] = [];
  const ipcacheRemove: string[] = [];
  for (const [cidr, e] of b) {
    const h = a.get(cidr);
    if (!h || h.identity !== e.identity || h.nodeId !== e.nodeId) ipcacheUpsert.push({ ...e, cidr });
  }
  for (const cidr of a.keys()) if (!b.has(cidr)) ipcacheRemove.push(cidr);

  const p = policyByPair(prev.policy);
  const q = policyByPair(next.policy);
  const policyUpsert: PolicyEntry[] = [];
  const policyRemove: Array<{ localId: number; remoteId: number }> = [];
  for (const [k, e] of q) {
    const h = p.get(k);
    if (!h || h.authType !== e.authType || (h.mode ?? 'enforce') !== (e.mode ?? 'enforce')) {
      policyUpsert.push(e);
    }
  }
  for (const [k, h] of p) if (!q.has(k)) policyRemove.push({ localId: h.localId, remoteId: h.remoteId });
  return { ipcacheUpsert, ipcacheRemove, policyUpsert, policyRemove };
}

/** Whether a delta writes nothing. */
export function isEmptyDelta(d: DatapathDelta): boolean {
  return (
    (d.ipcacheUpsert?.length ?? 0) === 0 &&
    (d.ipcacheRemove?.length ?? 0) === 0 &&
    (d.policyUpsert?.length ?? 0) === 0 &&
    (d.policyRemove?.length ?? 0) === 0
  );
}
