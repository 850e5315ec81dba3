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
 *   - the verification time lies inside the window in which no certificate involved (presented or
 *     bundle authority) changes its validity status: OpenSSL reads the time only to compare it with
 *     certificates' notBefore and notAfter (valid when notBefore <= t < notAfter, at the one-second
 *     resolution of the integer time src/spiffe/openssl.ts sets), both for the certificates of the
 *     path and to prefer a currently valid issuer among several candidates. Inside the window every
 *     comparison comes out as it did; outside it the chain is verified in full again, so an
 *     expired chain fails with the same reason.
 * Failures are never cached: a refused chain is verified in full each time it is presented.
 *
 * The cache is bounded (least recently used entries go first) and an entry past its window is
 * dropped when it is next looked up.
 */
import { createHash, X509Certificate } from 'node:crypto';
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
  /**
   * Epoch seconds fromSec <= t < untilSec in which no certificate involved (presented or bundle
   * authority) changes between not yet valid, valid and expired (stableWindow).
   */
  fromSec: number;
  untilSec: number;
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
 * The interval of verification times, around `nowSec`, in which every certificate OpenSSL may
 * consider (each presented one and each authority of the bundle) keeps the validity status it has
 * at `nowSec`: from the latest notBefore/notAfter at or before nowSec to the first one after it.
 * Time enters path validation only through those statuses (x509_vfy.c: the validity of each
 * certificate of the path, and the preference for a currently valid issuer when several could
 * sign), so inside this interval OpenSSL builds the same path and reaches the same verdict. The
 * validated path's certificates are all valid at nowSec, so the interval never reaches past the
 * earliest of their notAfter. Undefined when a certificate's dates cannot be read.
 */
function stableWindow(
  ders: readonly Buffer[],
  result: VerifiedX509Svid,
  nowSec: number,
): { fromSec: number; untilSec: number } | undefined {
  let fromSec = -Infinity;
  let untilSec = Infinity;
  const byDer = new Map<Buffer, X509Certificate>();
  result.chain.forEach((c, i) => {
    const d = ders[i];
    if (d) byDer.set(d, c);
  });
  for (const der of ders) {
    let cert = byDer.get(der);
    try {
      cert ??= new X509Certificate(der);
    } catch {
      return undefined;
    }
    for (const t of [epochSeconds(cert.validFrom), epochSeconds(cert.validTo)]) {
      if (!Number.isFinite(t)) return undefined;
      if (t <= nowSec) fromSec = Math.max(fromSec, t);
      else untilSec = Math.min(untilSec, t);
    }
  }
  return fromSec <= nowSec && nowSec < untilSec ? { fromSec, untilSec } : undefined;
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
        hit.fromSec <= nowSec &&
        nowSec < hit.untilSec &&
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
    const window = authorities ? stableWindow([...chainDer, ...authorities], result, nowSec) : undefined;
    if (authorities && window) {
      cache.set(key, {
        result: copyOf(result),
        trustDomain,
        bundleDigest: digestOf(authorities, 0),
        fromSec: window.fromSec,
        untilSec: window.untilSec,
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
