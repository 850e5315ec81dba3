/**
 * What an auth entry's trust rests on, and whether it still does.
 *
 * A handshake's decision relies on the presented chains (leaf and intermediates, both sides) and on
 * the trust-bundle authorities those chains were validated against. The entry keeps SHA-256
 * fingerprints of them; when a trust bundle changes, an entry whose chain no longer reaches any
 * authority of the new bundle has lost its trust and is revoked (audit reason `bundle-revoked`).
 * SPIFFE replaces CRL/OCSP with short-lived SVIDs and bundle updates: removing an authority from a
 * bundle is how trust in it is withdrawn (SPIFFE Trust Domain and Bundle §4).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { TrustBundles } from '../spiffe/index.js';

/** The authorities one verified chain was anchored to. */
export interface ChainAnchors {
  /** Trust domain whose bundle anchored the chain (the trust domain of the chain's SPIFFE ID). */
  trustDomain: string;
  /** SHA-256 fingerprints (upper-case hex, colon-separated, as X509Certificate.fingerprint256) of the anchoring authorities. */
  anchors: string[];
  /** Fingerprints of the presented chain, leaf first (leaf and intermediates). */
  chain: string[];
}

/** Everything an entry's decision relied on: one ChainAnchors per verified chain (the peer's and ours). */
export interface EntryTrust {
  chains: ChainAnchors[];
}

/** Fingerprints of the authorities of each trust domain's bundle. */
export type BundleFingerprints = ReadonlyMap<string, ReadonlySet<string>>;

const parsed = new LRUCache<string, X509Certificate>({ max: 4096 });
const issuedBy = new LRUCache<string, boolean>({ max: 8192 });

function cert(der: Buffer): X509Certificate {
  // Keyed by the DER's SHA-256, not the DER itself: a key string as long as the certificate would
  // double what the cache holds per certificate.
  const k = createHash('sha256').update(der).digest('base64');
  let c = parsed.get(k);
  if (!c) {
    c = new X509Certificate(der);
    parsed.set(k, c);
  }
  return c;
}

/** parent signed child: names chain and the signature verifies (memoized per fingerprint pair). */
function issued(child: X509Certificate, parent: X509Certificate): boolean {
  const k = `${child.fingerprint256}>${parent.fingerprint256}`;
  const hit = issuedBy.get(k);
  if (hit !== undefined) return hit;
  let ok: boolean;
  try {
    ok = child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    ok = false;
  }
  issuedBy.set(k, ok);
  return ok;
}

/** Trust domain name of a SPIFFE ID string ("spiffe://td/path" → "td"). */
export function trustDomainOf(spiffeId: string): string {
  const rest = spiffeId.startsWith('spiffe://') ? spiffeId.slice('spiffe://'.length) : spiffeId;
  const slash = rest.indexOf('/');
  return slash < 0 ? rest : rest.slice(0, slash);
}

/**
 * The bundle authorities of `trustDomain` that anchor a chain (leaf first), found the way a path
 * is built: from the leaf up through presented certificates until an authority of the bundle
 * issued the current certificate (or is the current certificate). Every authority that does is
 * returned (a re-issued root with the same key anchors the chain as well). Empty when the chain
 * reaches no authority. Run this on a chain that already passed path validation; it only finds
 * what that validation relied on.
 */
export function chainAnchors(
  chainDer: readonly Buffer[],
  bundles: TrustBundles,
  trustDomain: string,
): { anchors: ChainAnchors; anchorsDer: Buffer[] } {
  const chain = chainDer.map(cert);
  const authoritiesDer = bundles.get(trustDomain) ?? [];
  const authorities = authoritiesDer.map((der) => ({ der, c: cert(der) }));
  const out = {
    anchors: { trustDomain, anchors: [] as string[], chain: chain.map((c) => c.fingerprint256) },
    anchorsDer: [] as Buffer[],
  };
  if (chain.length === 0) return out;
  let current = chain[0]!;
  const used = new Set<number>([0]);
  for (let depth = 0; depth <= chain.length; depth++) {
    const found = authorities.filter(
      (a) => a.c.fingerprint256 === current.fingerprint256 || issued(current, a.c),
    );
    if (found.length > 0) {
      out.anchors.anchors = found.map((a) => a.c.fingerprint256);
      out.anchorsDer = found.map((a) => a.der);
      return out;
    }
    const idx = chain.findIndex((c, i) => !used.has(i) && issued(current, c));
    if (idx < 0) break;
    used.add(idx);
    current = chain[idx]!;
  }
  return out;
}

/** Fingerprints of every authority of every trust domain in the bundles. */
export function bundleFingerprints(bundles: TrustBundles): BundleFingerprints {
  const out = new Map<string, Set<string>>();
  for (const [td, ders] of bundles) {
    const set = new Set<string>();
    for (const der of ders) {
      try {
        set.add(cert(der).fingerprint256);
      } catch {
        // An unparsable authority anchors nothing.
      }
    }
    out.set(td, set);
  }
  return out;
}

/**
 * Why an entry's trust is gone under the given bundles, or undefined while every chain it relied
 * on still reaches at least one of its anchors.
 */
export function trustLost(trust: EntryTrust, bundles: BundleFingerprints): string | undefined {
  for (const c of trust.chains) {
    const current = bundles.get(c.trustDomain);
    if (!current || current.size === 0) return `the trust bundle of "${c.trustDomain}" is gone`;
    if (!c.anchors.some((fp) => current.has(fp))) {
      return `the authority that anchored a chain of "${c.trustDomain}" (${c.anchors.join(', ') || 'none'}) is no longer in its bundle`;
    }
  }
  return undefined;
}

/** Authorities present in `before` and missing from `after`, per trust domain. */
export function removedAuthorities(
  before: BundleFingerprints,
  after: BundleFingerprints,
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [td, fps] of before) {
    const now = after.get(td);
    const gone = [...fps].filter((fp) => !now?.has(fp));
    if (gone.length > 0) out.set(td, gone);
  }
  return out;
}
