import { X509Certificate } from 'node:crypto';
import { LRUCache } from 'lru-cache';

// Parsing a certificate costs far more than the rest of a handshake's bookkeeping, and the same
// SVIDs are presented again and again: remember notAfter per DER (exact bytes as the key).
const notAfterCache = new LRUCache<string, number>({ max: 2048 });

/** notAfter of a DER certificate in epoch milliseconds. Throws on an unparsable certificate or date. */
export function certNotAfterMs(der: Buffer | X509Certificate): number {
  if (der instanceof X509Certificate) return parseNotAfter(der);
  const key = der.toString('base64');
  const cached = notAfterCache.get(key);
  if (cached !== undefined) return cached;
  const ms = parseNotAfter(new X509Certificate(der));
  notAfterCache.set(key, ms);
  return ms;
}

function parseNotAfter(cert: X509Certificate): number {
  const ms = Date.parse(cert.validTo);
  if (!Number.isFinite(ms)) throw new Error(`read certificate notAfter: cannot parse "${cert.validTo}"`);
  return ms;
}

/** Earliest notAfter over certificates (DER). Throws on an empty list. */
export function earliestNotAfterMs(chain: readonly Buffer[]): number {
  if (chain.length === 0) throw new Error('earliest notAfter: empty chain');
  let min = Infinity;
  for (const der of chain) min = Math.min(min, certNotAfterMs(der));
  return min;
}

export interface EntryExpiryInput {
  /** Every certificate chain presented in the handshake (ours and the peer's), leaf first. */
  chains: readonly (readonly Buffer[])[];
  nowMs: number;
  maxEntryTtlMs: number;
}

export interface EntryExpiry {
  expiresAtMs: number;
  /** Earliest notAfter over all presented certificates. */
  earliestNotAfterMs: number;
  /** Whether the configured maximum, not a certificate, decided the expiry. */
  cappedByTtl: boolean;
}

/** Entry expiry = min(notAfter of every certificate in every presented chain, now + maxEntryTtl). */
export function computeEntryExpiry(input: EntryExpiryInput): EntryExpiry {
  if (!(input.maxEntryTtlMs > 0)) throw new RangeError('entry expiry: maxEntryTtlMs must be > 0');
  let earliest = Infinity;
  for (const chain of input.chains) earliest = Math.min(earliest, earliestNotAfterMs(chain));
  if (!Number.isFinite(earliest)) throw new Error('entry expiry: no certificates');
  const cap = input.nowMs + input.maxEntryTtlMs;
  return { expiresAtMs: Math.min(earliest, cap), earliestNotAfterMs: earliest, cappedByTtl: cap < earliest };
}
