/**
 * A bounded cache of X509-SVID verification results, so that a chain presented again and again
 * (every handshake of the same workload pair presents the same SVID chain until it rotates) is
 * validated once per trust bundle instead of once per handshake.
 *
 * Why a hit is the same verdict as a full verification: verifyX509Svid is a pure function of
 * (the presented chain's bytes, the authorities of the leaf's trust-domain bundle, the chain length
 * limit, the verification time). OpenSSL's path validation consults nothing else (no CRL, no
 * network, an empty default store; src/spiffe/openssl.ts builds a fresh store from exactly these
 * authorities on every call), and the leaf and signer rules read only the certificates. A result is
 * therefore reused only when
 *   - the chain bytes are identical (SHA-256 over the length-prefixed DER of every certificate),
 *   - the chain length limit is the same,
 *   - the bundle of the trust domain holds exactly the same authorities, in the same order (SHA-256
 *     over them, recomputed on every lookup: a bundle update, an added or removed authority, or a
 *     trust domain whose bundle is gone is a miss and a full verification), and
 *   - the verification time lies inside the window in which every certificate of the validated path
 *     is valid: notBefore <= t < notAfter at one-second resolution, exactly the rule OpenSSL applies
 *     (X509_cmp_time in x509_vfy.c with the integer time src/spiffe/openssl.ts sets). Outside the
 *     window the chain is verified in full again, so an expired chain fails with the same reason.
 * Failures are never cached: a refused chain is verified in full each time it is presented.
 *
 * The cache is bounded (least recently used entries go first) and an entry past its window is
 * dropped when it is next looked up.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { TrustBundles } from './svid.js';
import { verifyX509Svid, type VerifiedX509Svid, type VerifyX509SvidOptions } from './x509-svid.js';

/**
 * Default bound on cached verification results: distinct peer SVID chains a verifier remembers.
 * One result holds the parsed certificates of its path; measured at about 2 KiB of heap and 8 KiB
 * of RSS per entry (one-certificate chains), so at most about 8 MiB.
 */
export const DEFAULT_VERIFY_CACHE_ENTRIES = 1024;

/** Longest chain verifyX509Svid accepts by default (kept in step with src/spiffe/x509-svid.ts). */
const DEFAULT_MAX_CHAIN_LENGTH = 8;

export interface X509SvidVerifierOptions {
  /** Most results held (LRU); 0 turns caching off. Default DEFAULT_VERIFY_CACHE_ENTRIES. */
  maxEntries?: number;
}

export interface X509SvidVerifierStats {
  hits: number;
  misses: number;
  /** Results held now. */
  size: number;
}

interface CachedVerification {
  result: VerifiedX509Svid;
  trustDomain: string;
  /** SHA-256 of the trust-domain bundle's authorities the chain was validated against. */
  bundleDigest: string;
  /** Validity window of the validated path, epoch seconds: notBefore <= t < notAfter. */
  notBeforeSec: number;
  notAfterSec: number;
}

/** SHA-256 over the length-prefixed DER of each certificate (no two lists share an input). */
function digestOf(ders: readonly Buffer[], extra: number): string {
  const h = createHash('sha256');
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(extra >>> 0, 0);
  h.update(len);
  for (const d of ders) {
    len.writeUInt32BE(d.length, 0);
    h.update(len);
    h.update(d);
  }
  return h.digest('base64');
}

function epochSeconds(text: string): number {
  return Math.floor(Date.parse(text) / 1000);
}

/**
 * verifyX509Svid with a cache of successful results (see the module comment for why a hit is the
 * same verdict). Thread of use: one instance per verifying component (the handshake client, the
 * handshake server); each is bounded by `maxEntries`.
 */
export class X509SvidVerifier {
  private readonly cache: LRUCache<string, CachedVerification> | undefined;
  private hits = 0;
  private misses = 0;

  constructor(opts: X509SvidVerifierOptions = {}) {
    const max = opts.maxEntries ?? DEFAULT_VERIFY_CACHE_ENTRIES;
    if (!Number.isInteger(max) || max < 0)
      throw new RangeError('X509-SVID verifier: maxEntries must be an integer >= 0');
    this.cache = max > 0 ? new LRUCache({ max }) : undefined;
  }

  /**
   * Verify a chain (leaf first, DER) against `bundles` at `opts.now` (default: now), exactly as
   * verifyX509Svid does; throws X509SvidError with the same reasons. The returned object is the
   * caller's own (arrays are copies).
   */
  verify(
    chainDer: readonly Buffer[],
    bundles: TrustBundles,
    opts: VerifyX509SvidOptions = {},
  ): VerifiedX509Svid {
    const now = opts.now ?? new Date();
    const maxLen = opts.maxChainLength ?? DEFAULT_MAX_CHAIN_LENGTH;
    const cache = this.cache;
    if (!cache || chainDer.length === 0 || chainDer.length > maxLen) {
      this.misses++;
      return verifyX509Svid(chainDer, bundles, { now, maxChainLength: maxLen });
    }
    const nowSec = Math.floor(now.getTime() / 1000);
    const key = digestOf(chainDer, maxLen);
    const hit = cache.get(key);
    if (hit) {
      const authorities = bundles.get(hit.trustDomain);
      if (
        hit.notBeforeSec <= nowSec &&
        nowSec < hit.notAfterSec &&
        authorities !== undefined &&
        authorities.length > 0 &&
        digestOf(authorities, 0) === hit.bundleDigest
      ) {
        this.hits++;
        return copyOf(hit.result);
      }
      // Bundle changed, window passed (or not reached): verify in full, and forget this result.
      cache.delete(key);
    }
    this.misses++;
    const result = verifyX509Svid(chainDer, bundles, { now, maxChainLength: maxLen });
    const trustDomain = result.spiffeId.trustDomain.name;
    const authorities = bundles.get(trustDomain);
    let notBeforeSec = -Infinity;
    let notAfterSec = Infinity;
    for (const c of result.path) {
      notBeforeSec = Math.max(notBeforeSec, epochSeconds(c.validFrom));
      notAfterSec = Math.min(notAfterSec, epochSeconds(c.validTo));
    }
    // Only a window that is known and holds the time just verified is remembered.
    if (
      authorities &&
      Number.isFinite(notBeforeSec) &&
      Number.isFinite(notAfterSec) &&
      notBeforeSec <= nowSec &&
      nowSec < notAfterSec
    ) {
      cache.set(key, {
        result: copyOf(result),
        trustDomain,
        bundleDigest: digestOf(authorities, 0),
        notBeforeSec,
        notAfterSec,
      });
    }
    return result;
  }

  stats(): X509SvidVerifierStats {
    return { hits: this.hits, misses: this.misses, size: this.cache?.size ?? 0 };
  }

  /** Forget every cached result. */
  clear(): void {
    this.cache?.clear();
  }
}

function copyOf(v: VerifiedX509Svid): VerifiedX509Svid {
  return {
    ...v,
    chain: [...v.chain],
    serials: [...v.serials],
    path: [...v.path],
    notBefore: new Date(v.notBefore.getTime()),
    notAfter: new Date(v.notAfter.getTime()),
    chainNotAfter: new Date(v.chainNotAfter.getTime()),
  };
}
