import { describe, expect, it } from 'vitest';
import {
  bundleFingerprints,
  chainAnchors,
  removedAuthorities,
  trustDomainOf,
  trustLost,
} from '../../../src/auth/trust.js';
import { newPki } from '../../integration/handshake/pki.js';

describe('entry trust', () => {
  it('finds the authority a chain rests on, and loses it when the bundle drops it', async () => {
    const pki = await newPki('demo.local');
    const other = await newPki('demo.local');
    const svid = await pki.issue('spiffe://demo.local/ns/a/sa/web', { ttlMs: 60_000 });
    const both = new Map([
      ['demo.local', [...pki.bundles.get('demo.local')!, ...other.bundles.get('demo.local')!]],
    ]);
    const r = chainAnchors(svid.chainDer, both, 'demo.local');
    expect(r.anchorsDer).toEqual(pki.bundles.get('demo.local'));
    expect(r.anchors.anchors).toHaveLength(1);
    expect(r.anchors.chain).toHaveLength(svid.chainDer.length);
    const trust = { chains: [r.anchors] };
    expect(trustLost(trust, bundleFingerprints(both))).toBeUndefined();
    // Only the other CA is left: the chain's authority is gone.
    const after = bundleFingerprints(other.bundles);
    expect(trustLost(trust, after)).toMatch(/no longer in its bundle/);
    expect(trustLost(trust, bundleFingerprints(new Map()))).toMatch(/bundle of "demo.local" is gone/);
    expect(removedAuthorities(bundleFingerprints(both), after).get('demo.local')).toEqual(r.anchors.anchors);
    // A chain that reaches no authority has no anchors.
    expect(chainAnchors(svid.chainDer, other.bundles, 'demo.local').anchorsDer).toEqual([]);
  });

  it('reads the trust domain of a SPIFFE ID', () => {
    expect(trustDomainOf('spiffe://demo.local/ns/a')).toBe('demo.local');
    expect(trustDomainOf('spiffe://td')).toBe('td');
  });
});
