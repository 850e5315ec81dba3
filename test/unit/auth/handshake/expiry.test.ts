import { beforeAll, describe, expect, it } from 'vitest';
import {
  certNotAfterMs,
  computeEntryExpiry,
  earliestNotAfterMs,
} from '../../../../src/auth/handshake/expiry.js';
import type { Svid } from '../../../../src/spiffe/index.js';
import { newPki } from '../../../integration/handshake/pki.js';

let long: Svid;
let short: Svid;
let chained: Svid;

beforeAll(async () => {
  const pki = await newPki('expiry.local');
  long = await pki.issue('spiffe://expiry.local/long', { ttlMs: 10 * 3_600_000 });
  short = await pki.issue('spiffe://expiry.local/short', { ttlMs: 600_000 });
  const inter = await newPki('expiry.local', { intermediate: true });
  chained = await inter.issue('spiffe://expiry.local/chained', { ttlMs: 20 * 3_600_000 });
});

describe('entry expiry', () => {
  it('reads notAfter in ms (second precision, as encoded)', () => {
    expect(certNotAfterMs(long.chainDer[0]!)).toBe(long.notAfter.getTime());
    expect(certNotAfterMs(long.chainDer[0]!) % 1000).toBe(0);
  });

  it('is the earliest notAfter of both chains when that is before now + maxEntryTtl', () => {
    const nowMs = Date.now();
    const e = computeEntryExpiry({
      chains: [long.chainDer, short.chainDer],
      nowMs,
      maxEntryTtlMs: 3_600_000,
    });
    expect(e.expiresAtMs).toBe(short.notAfter.getTime());
    expect(e.cappedByTtl).toBe(false);
    // Order of chains does not matter.
    expect(
      computeEntryExpiry({ chains: [short.chainDer, long.chainDer], nowMs, maxEntryTtlMs: 3_600_000 })
        .expiresAtMs,
    ).toBe(short.notAfter.getTime());
  });

  it('is capped at now + maxEntryTtl', () => {
    const nowMs = 1_000_000;
    const e = computeEntryExpiry({
      chains: [long.chainDer, short.chainDer],
      nowMs: Date.now(),
      maxEntryTtlMs: 5_000,
    });
    expect(e.cappedByTtl).toBe(true);
    expect(computeEntryExpiry({ chains: [long.chainDer], nowMs, maxEntryTtlMs: 5_000 }).expiresAtMs).toBe(
      nowMs + 5_000,
    );
  });

  it('counts every certificate of a chain, not only the leaf', () => {
    const interNotAfter = certNotAfterMs(chained.chainDer[1]!);
    expect(interNotAfter).toBeLessThan(chained.notAfter.getTime());
    expect(earliestNotAfterMs(chained.chainDer)).toBe(interNotAfter);
    const e = computeEntryExpiry({
      chains: [chained.chainDer],
      nowMs: Date.now(),
      maxEntryTtlMs: 48 * 3_600_000,
    });
    expect(e.expiresAtMs).toBe(interNotAfter);
  });

  it('refuses empty chains and a non-positive cap', () => {
    expect(() => computeEntryExpiry({ chains: [[]], nowMs: 0, maxEntryTtlMs: 1 })).toThrow(/empty chain/);
    expect(() => computeEntryExpiry({ chains: [], nowMs: 0, maxEntryTtlMs: 1 })).toThrow(/no certificates/);
    expect(() => computeEntryExpiry({ chains: [long.chainDer], nowMs: 0, maxEntryTtlMs: 0 })).toThrow(
      RangeError,
    );
    expect(() => certNotAfterMs(Buffer.from('not a certificate'))).toThrow();
  });
});
