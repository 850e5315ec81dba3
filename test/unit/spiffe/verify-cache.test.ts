import { beforeAll, describe, expect, it } from 'vitest';
import type { TrustBundles } from '../../../src/spiffe/index.js';
import {
  X509SvidError,
  X509SvidVerifier,
  verifyX509Svid,
  type X509SvidReason,
} from '../../../src/spiffe/index.js';
import { makeIntermediateCa, makeLeaf, makeRootCa, type TestCert } from '../../helpers/certs.js';

const TD = 'example.org';
const WEB = 'spiffe://example.org/ns/demo/sa/web';
const DB = 'spiffe://example.org/ns/demo/sa/db';
const HOUR = 3_600_000;

let root: TestCert;
let otherRoot: TestCert;
let bundles: TrustBundles;

beforeAll(async () => {
  root = await makeRootCa(TD);
  otherRoot = await makeRootCa(TD, { subject: 'O=test,CN=other root' });
  bundles = new Map([[TD, [root.der]]]);
});

function reasonOf(fn: () => unknown): X509SvidReason {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof X509SvidError)) throw err;
    return err.reason;
  }
  throw new Error('expected an X509SvidError, verification passed');
}

/** Seconds-aligned time, as certificate validity is. */
function atSecond(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

describe('X509SvidVerifier: cached results', () => {
  it('verifies a chain once and answers a repeat from the cache with the same result', async () => {
    const inter = await makeIntermediateCa(root, TD);
    const leaf = await makeLeaf(inter, WEB);
    const v = new X509SvidVerifier();
    const now = new Date();
    const first = v.verify([leaf.der, inter.der], bundles, { now });
    expect(v.stats()).toEqual({ hits: 0, misses: 1, size: 1 });
    // A fresh Buffer with the same bytes, as the next TLS handshake hands over.
    const second = v.verify([Buffer.from(leaf.der), Buffer.from(inter.der)], bundles, { now });
    expect(v.stats()).toEqual({ hits: 1, misses: 1, size: 1 });
    const full = verifyX509Svid([leaf.der, inter.der], bundles, { now });
    for (const r of [first, second]) {
      expect(r.spiffeId.toString()).toBe(full.spiffeId.toString());
      expect(r.serials).toEqual(full.serials);
      expect(r.notAfter.getTime()).toBe(full.notAfter.getTime());
      expect(r.chainNotAfter.getTime()).toBe(full.chainNotAfter.getTime());
      expect(r.anchorDer.equals(full.anchorDer)).toBe(true);
      expect(r.path.map((c) => c.fingerprint256)).toEqual(full.path.map((c) => c.fingerprint256));
    }
  });

  it('hands out copies: a caller changing its result does not change the next answer', async () => {
    const leaf = await makeLeaf(root, WEB);
    const v = new X509SvidVerifier();
    const first = v.verify([leaf.der], bundles);
    first.serials[0] = 'tampered';
    first.notAfter.setTime(0);
    const second = v.verify([leaf.der], bundles);
    expect(v.stats().hits).toBe(1);
    expect(second.serials[0]).toBe(leaf.cert.serialNumber.toUpperCase());
    expect(second.notAfter.getTime()).toBe(leaf.cert.notAfter.getTime());
  });

  it('never caches a refusal: a chain that failed is verified in full each time', async () => {
    const stranger = await makeLeaf(otherRoot, WEB);
    const v = new X509SvidVerifier();
    expect(reasonOf(() => v.verify([stranger.der], bundles))).toBe('untrusted');
    expect(reasonOf(() => v.verify([stranger.der], bundles))).toBe('untrusted');
    expect(v.stats()).toEqual({ hits: 0, misses: 2, size: 0 });
  });

  it('verifies a rotated SVID in full and keeps answering for the old one while it is valid', async () => {
    const before = await makeLeaf(root, WEB);
    const after = await makeLeaf(root, WEB);
    const v = new X509SvidVerifier();
    v.verify([before.der], bundles);
    const rotated = v.verify([after.der], bundles);
    expect(v.stats()).toEqual({ hits: 0, misses: 2, size: 2 });
    expect(rotated.serials).toEqual([after.cert.serialNumber.toUpperCase()]);
    expect(v.verify([before.der], bundles).serials).toEqual([before.cert.serialNumber.toUpperCase()]);
    expect(v.stats().hits).toBe(1);
  });
});

describe('X509SvidVerifier: a bundle change invalidates', () => {
  it('refuses a cached chain once its authority left the bundle (a new bundle object)', async () => {
    const leaf = await makeLeaf(root, WEB);
    const v = new X509SvidVerifier();
    v.verify([leaf.der], bundles);
    const rotated: TrustBundles = new Map([[TD, [otherRoot.der]]]);
    expect(reasonOf(() => v.verify([leaf.der], rotated))).toBe('untrusted');
    expect(v.stats()).toEqual({ hits: 0, misses: 2, size: 0 });
  });

  it('refuses a cached chain when the same bundle array was changed in place', async () => {
    const leaf = await makeLeaf(root, WEB);
    const authorities = [root.der];
    const mutable = new Map([[TD, authorities]]);
    const v = new X509SvidVerifier();
    v.verify([leaf.der], mutable);
    authorities[0] = otherRoot.der;
    expect(reasonOf(() => v.verify([leaf.der], mutable))).toBe('untrusted');
    expect(v.stats().hits).toBe(0);
  });

  it('refuses a cached chain whose trust domain has no bundle any more', async () => {
    const leaf = await makeLeaf(root, WEB);
    const v = new X509SvidVerifier();
    v.verify([leaf.der], bundles);
    expect(reasonOf(() => v.verify([leaf.der], new Map()))).toBe('no-bundle');
    expect(reasonOf(() => v.verify([leaf.der], new Map([[TD, []]])))).toBe('no-bundle');
    expect(v.stats().hits).toBe(0);
  });

  it('verifies again in full when an authority is added, and passes', async () => {
    const leaf = await makeLeaf(root, WEB);
    const v = new X509SvidVerifier();
    v.verify([leaf.der], bundles);
    const grown: TrustBundles = new Map([[TD, [root.der, otherRoot.der]]]);
    expect(v.verify([leaf.der], grown).spiffeId.toString()).toBe(WEB);
    expect(v.stats()).toEqual({ hits: 0, misses: 2, size: 1 });
    v.verify([leaf.der], grown);
    expect(v.stats().hits).toBe(1);
  });
});

describe('X509SvidVerifier: expiry', () => {
  it('answers from the cache only inside the validity window of the whole path, as OpenSSL judges it', async () => {
    const t0 = atSecond(Date.now());
    const interNotAfter = new Date(t0.getTime() + 20 * 60_000);
    const inter = await makeIntermediateCa(root, TD, {
      notBefore: new Date(t0.getTime() - HOUR),
      notAfter: interNotAfter,
    });
    const leafNotBefore = new Date(t0.getTime() - 10 * 60_000);
    const leaf = await makeLeaf(inter, WEB, {
      notBefore: leafNotBefore,
      notAfter: new Date(t0.getTime() + HOUR),
    });
    const chain = [leaf.der, inter.der];
    const v = new X509SvidVerifier();
    v.verify(chain, bundles, { now: t0 });
    // The last second before the intermediate's notAfter: still valid, from the cache.
    v.verify(chain, bundles, { now: new Date(interNotAfter.getTime() - 1000) });
    expect(v.stats()).toEqual({ hits: 1, misses: 1, size: 1 });
    // At notAfter the intermediate has expired (OpenSSL: valid up to, not including, notAfter),
    // although the leaf has not: the cached result must not be used.
    expect(reasonOf(() => v.verify(chain, bundles, { now: interNotAfter }))).toBe('expired');
    expect(reasonOf(() => v.verify(chain, bundles, { now: new Date(t0.getTime() + 30 * 60_000) }))).toBe(
      'expired',
    );
    expect(v.stats().hits).toBe(1);
    // Before the leaf's notBefore (a clock stepped back): not yet valid, verified in full.
    v.verify(chain, bundles, { now: t0 });
    expect(reasonOf(() => v.verify(chain, bundles, { now: new Date(leafNotBefore.getTime() - 1000) }))).toBe(
      'not-yet-valid',
    );
    // Exactly notBefore is valid: the first second of the window, verified in full again after
    // the miss above dropped the entry, then cached.
    v.verify(chain, bundles, { now: leafNotBefore });
    v.verify(chain, bundles, { now: leafNotBefore });
    expect(v.stats().hits).toBe(2);
  });
});

describe('X509SvidVerifier: validity changes anywhere in the inputs end the window', () => {
  it('verifies in full again when a bundle authority becomes valid or expires, though the path did not change', async () => {
    const t0 = atSecond(Date.now());
    const MIN = 60_000;
    // Not valid yet at t0: OpenSSL prefers currently valid issuers, so its validity matters.
    const future = await makeRootCa(TD, {
      subject: 'O=test,CN=future root',
      notBefore: new Date(t0.getTime() + 10 * MIN),
      notAfter: new Date(t0.getTime() + 48 * HOUR),
    });
    // Still valid at t0, expires 20 minutes later.
    const ending = await makeRootCa(TD, {
      subject: 'O=test,CN=ending root',
      notBefore: new Date(t0.getTime() - HOUR),
      notAfter: new Date(t0.getTime() + 20 * MIN),
    });
    const leaf = await makeLeaf(root, WEB, { notAfter: new Date(t0.getTime() + HOUR) });
    const b: TrustBundles = new Map([[TD, [root.der, future.der, ending.der]]]);
    const at = (minutes: number): Date => new Date(t0.getTime() + minutes * MIN);
    const v = new X509SvidVerifier();
    v.verify([leaf.der], b, { now: at(0) });
    v.verify([leaf.der], b, { now: at(5) });
    expect(v.stats()).toMatchObject({ hits: 1, misses: 1 });
    v.verify([leaf.der], b, { now: at(10) }); // the future root became valid
    v.verify([leaf.der], b, { now: at(15) });
    expect(v.stats()).toMatchObject({ hits: 2, misses: 2 });
    v.verify([leaf.der], b, { now: at(20) }); // the ending root expired
    v.verify([leaf.der], b, { now: at(30) });
    expect(v.stats()).toMatchObject({ hits: 3, misses: 3 });
  });
});

describe('X509SvidVerifier: bound', () => {
  it('holds at most maxEntries results, dropping the least recently used', async () => {
    const a = await makeLeaf(root, WEB);
    const b = await makeLeaf(root, DB);
    const c = await makeLeaf(root, WEB);
    const v = new X509SvidVerifier({ maxEntries: 2 });
    v.verify([a.der], bundles);
    v.verify([b.der], bundles);
    v.verify([a.der], bundles); // a is now the most recently used
    v.verify([c.der], bundles); // evicts b
    expect(v.stats()).toEqual({ hits: 1, misses: 3, size: 2 });
    v.verify([a.der], bundles);
    v.verify([c.der], bundles);
    expect(v.stats().hits).toBe(3);
    v.verify([b.der], bundles);
    expect(v.stats()).toEqual({ hits: 3, misses: 4, size: 2 });
  });

  it('caches nothing with maxEntries 0, and refuses a negative or fractional bound', async () => {
    const leaf = await makeLeaf(root, WEB);
    const v = new X509SvidVerifier({ maxEntries: 0 });
    v.verify([leaf.der], bundles);
    v.verify([leaf.der], bundles);
    expect(v.stats()).toEqual({ hits: 0, misses: 2, size: 0 });
    expect(() => new X509SvidVerifier({ maxEntries: -1 })).toThrow(RangeError);
    expect(() => new X509SvidVerifier({ maxEntries: 1.5 })).toThrow(RangeError);
  });

  it('keys on the chain length limit too: a longer chain than allowed is refused even after a hit', async () => {
    const inter = await makeIntermediateCa(root, TD);
    const leaf = await makeLeaf(inter, WEB);
    const v = new X509SvidVerifier();
    v.verify([leaf.der, inter.der], bundles);
    expect(reasonOf(() => v.verify([leaf.der, inter.der], bundles, { maxChainLength: 1 }))).toBe('malformed');
  });
});
