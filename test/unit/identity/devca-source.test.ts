import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DevCa, DevCaError, DevCaSource, type IdentityEvent } from '../../../src/identity/index.js';
import { verifyX509Svid } from '../../../src/spiffe/index.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const DB = 'spiffe://demo.local/ns/demo/sa/db';
const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'meshauth-devca-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('DevCa', () => {
  it('creates a CA once (key 0600), reloads the same one, and issues SVIDs that verify', async () => {
    const dir = tmp();
    const first = await DevCa.init({ dir, trustDomain: 'demo.local' });
    expect(first.created).toBe(true);
    expect(statSync(join(dir, 'ca.key')).mode & 0o777).toBe(0o600);
    const again = await DevCa.init({ dir, trustDomain: 'demo.local' });
    expect(again.created).toBe(false);
    expect(again.ca.caDer.equals(first.ca.caDer)).toBe(true);
    const svid = await again.ca.issue(WEB, { ttlMs: 60_000 });
    const v = verifyX509Svid(svid.chainDer, first.ca.bundles());
    expect(v.spiffeId.toString()).toBe(WEB);
    expect(svid.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(60_000);
    expect(svid.leaf.checkPrivateKey(svid.key)).toBe(true);
  });

  it('refuses another trust domain, a half-present pair and a key of another CA', async () => {
    const dir = tmp();
    await DevCa.init({ dir, trustDomain: 'demo.local' });
    await expect(DevCa.init({ dir, trustDomain: 'other.local' })).rejects.toThrow(
      /is for trust domain "demo.local"/,
    );
    const other = tmp();
    await DevCa.init({ dir: other, trustDomain: 'demo.local' });
    writeFileSync(join(dir, 'ca.key'), readFileSync(join(other, 'ca.key')));
    await expect(DevCa.load({ caCert: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key') })).rejects.toThrow(
      /does not belong to/,
    );
    rmSync(join(other, 'ca.key'));
    await expect(DevCa.init({ dir: other, trustDomain: 'demo.local' })).rejects.toBeInstanceOf(DevCaError);
  });

  it('issues only for its own trust domain and never for a root ID', async () => {
    const ca = await DevCa.create('demo.local');
    await expect(ca.issue('spiffe://evil.local/ns/x/sa/y')).rejects.toThrow(/not in trust domain/);
    await expect(ca.issue('spiffe://demo.local')).rejects.toThrow(/has no path/);
    await expect(ca.issue('not-an-id')).rejects.toThrow(/scheme is missing or invalid/);
  });
});

describe('DevCaSource', () => {
  it('issues wanted identities, renews them before expiry, and drops the ones no longer wanted', async () => {
    const ca = await DevCa.create('demo.local');
    const clock = new FakeClock();
    const src = new DevCaSource(ca, { svidTtlMs: 60_000, renewAt: 0.5, clock });
    const events: IdentityEvent[] = [];
    src.subscribe((e) => events.push(e));
    try {
      src.setWanted([WEB, DB]);
      await src.ready();
      expect(src.svid(WEB)?.spiffeId).toBe(WEB);
      expect(src.svid(DB)?.spiffeId).toBe(DB);
      const firstSerial = src.svid(WEB)!.leaf.serialNumber;
      // Renewal at half the lifetime, well before notAfter.
      clock.advance(30_000);
      await expect.poll(() => src.svid(WEB)?.leaf.serialNumber, { timeout: 3_000 }).not.toBe(firstSerial);
      const renewed = events.find(
        (e) => e.type === 'svid-updated' && e.spiffeId === WEB && e.previousNotAfter,
      );
      expect(renewed).toBeDefined();
      src.setWanted([WEB]);
      expect(src.svid(DB)).toBeUndefined();
      expect(events).toContainEqual(expect.objectContaining({ type: 'svid-removed', spiffeId: DB }));
      expect(src.bundles().get('demo.local')?.[0]?.equals(ca.caDer)).toBe(true);
    } finally {
      await src.close();
    }
  });
});
