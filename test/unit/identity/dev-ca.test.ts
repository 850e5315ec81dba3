import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEV_CA_DEFAULT_SVID_TTL_MS, DevCa, DevCaError } from '../../../src/identity/index.js';
import { keyMatchesLeaf, parseBundle, readExtensions, verifyX509Svid } from '../../../src/spiffe/index.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('DevCa certificates follow the X509-SVID profile', () => {
  it('the CA is a P-256 signing certificate naming its trust domain', async () => {
    const ca = await DevCa.create('demo.local');
    const x = new X509Certificate(ca.caDer);
    const ext = readExtensions(ca.caDer);
    expect(x.ca).toBe(true);
    expect(ext.basicConstraints?.ca).toBe(true);
    expect([...ext.keyUsage!].sort()).toEqual(['cRLSign', 'keyCertSign']);
    expect(ext.uriSans).toEqual(['spiffe://demo.local']);
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(x.verify(x.publicKey)).toBe(true);
    // the PEM is a usable bundle for its trust domain
    expect(parseBundle(ca.caPem, 'demo.local').x509Authorities).toEqual([ca.caDer]);
    expect(ca.bundles()).toEqual(new Map([['demo.local', [ca.caDer]]]));
  });

  it('leaves carry one URI SAN, cA=false, digitalSignature without CA bits, both EKUs', async () => {
    const ca = await DevCa.create('demo.local');
    const svid = await ca.issue(WEB);
    const ext = readExtensions(svid.chainDer[0]!);
    expect(ext.uriSans).toEqual([WEB]);
    expect(ext.basicConstraints?.ca).toBe(false);
    expect(ext.keyUsage?.has('digitalSignature')).toBe(true);
    expect(ext.keyUsage?.has('keyCertSign')).toBe(false);
    expect(ext.keyUsage?.has('cRLSign')).toBe(false);
    expect(ext.extKeyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(svid.chainDer).toHaveLength(1);
    expect(svid.leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(keyMatchesLeaf(svid.key, svid.leaf)).toBe(true);
    expect(svid.chainPem).toBe(`${new X509Certificate(svid.chainDer[0]!).toString()}`);
    const v = verifyX509Svid(svid.chainDer, ca.bundles());
    expect(v.spiffeId.toString()).toBe(WEB);
    expect(v.notAfter.getTime()).toBe(svid.notAfter.getTime());
    // positive, unique serials
    const other = await ca.issue(WEB);
    expect(other.leaf.serialNumber).not.toBe(svid.leaf.serialNumber);
    expect(Number.parseInt(svid.leaf.serialNumber.slice(0, 1), 16)).toBeLessThan(8);
  });

  it('uses the default TTL, honours ttlMs and now, and never outlives the CA', async () => {
    const ca = await DevCa.create('demo.local', { ttlMs: 2 * 3_600_000 });
    const t0 = Date.now();
    const def = await ca.issue(WEB);
    expect(Math.abs(def.notAfter.getTime() - (t0 + DEV_CA_DEFAULT_SVID_TTL_MS))).toBeLessThan(5_000);
    expect(def.notBefore.getTime()).toBeLessThan(t0);

    const at = new Date(t0 + 600_000);
    const later = await ca.issue(WEB, { ttlMs: 60_000, now: at });
    expect(Math.abs(later.notAfter.getTime() - (at.getTime() + 60_000))).toBeLessThan(1_000);
    expect(later.notBefore.getTime()).toBeLessThanOrEqual(at.getTime());

    const capped = await ca.issue(WEB, { ttlMs: 10 * 3_600_000 });
    const caNotAfter = new Date(new X509Certificate(ca.caDer).validTo).getTime();
    expect(capped.notAfter.getTime()).toBeLessThanOrEqual(caNotAfter);
    expect(verifyX509Svid(capped.chainDer, ca.bundles()).chainNotAfter.getTime()).toBe(
      capped.notAfter.getTime(),
    );

    for (const ttlMs of [0, -1, Number.NaN])
      await expect(ca.issue(WEB, { ttlMs })).rejects.toBeInstanceOf(DevCaError);
  });

  it('regression: an expired CA refuses to issue instead of issuing SVIDs expired at birth', async () => {
    const ca = await DevCa.create('demo.local', { ttlMs: 3_600_000 });
    const caNotAfter = new Date(new X509Certificate(ca.caDer).validTo).getTime();
    // before: a certificate with notAfter = the CA's (past) notAfter; the dev CA source renewed it
    // at once (renewal delay max(0, negative)), issuing expired SVIDs in a tight loop
    for (const at of [caNotAfter, caNotAfter + 1, caNotAfter + 86_400_000, caNotAfter - 999]) {
      const err = await ca.issue(WEB, { now: new Date(at) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DevCaError);
      expect((err as Error).message).toContain(
        `dev CA issue: the development CA certificate (trust domain "demo.local") expires at ${new Date(caNotAfter).toISOString()}`,
      );
      expect((err as Error).message).toContain('create a new CA');
    }
    const last = await ca.issue(WEB, { now: new Date(caNotAfter - 1000) });
    expect(last.notAfter.getTime()).toBe(caNotAfter);
  });

  it('a CA loaded from disk issues SVIDs that chain to the saved certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-devca-'));
    dirs.push(dir);
    const { ca: created } = await DevCa.init({ dir, trustDomain: 'demo.local' });
    const loaded = await DevCa.load({ caCert: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key') });
    expect(loaded.trustDomain).toBe('demo.local');
    expect(loaded.caDer.equals(created.caDer)).toBe(true);
    const svid = await loaded.issue(WEB);
    const bundle = parseBundle(readFileSync(join(dir, 'ca.crt')), 'demo.local');
    expect(
      verifyX509Svid(svid.chainDer, new Map([['demo.local', bundle.x509Authorities]])).spiffeId.toString(),
    ).toBe(WEB);
    // and they do not verify against another CA of the same trust domain
    const stranger = await DevCa.create('demo.local');
    expect(() => verifyX509Svid(svid.chainDer, stranger.bundles())).toThrow(/does not chain/);
  });

  it('refuses to load files that are not a CA and its key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-devca-'));
    dirs.push(dir);
    await expect(DevCa.load({ caCert: join(dir, 'none.crt'), caKey: join(dir, 'none.key') })).rejects.toThrow(
      `dev CA load: ${join(dir, 'none.crt')}: no such file`,
    );
  });

  it('regression: a FIFO or a device as the CA key is refused at once, naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-devca-'));
    dirs.push(dir);
    await DevCa.init({ dir, trustDomain: 'demo.local' });
    const caKey = join(dir, 'ca.key');
    // before: readFile of a FIFO blocked for ever (the daemon's start and the CLI hung)
    rmSync(caKey);
    execFileSync('mkfifo', [caKey]);
    await expect(DevCa.load({ caCert: join(dir, 'ca.crt'), caKey })).rejects.toThrow(
      `dev CA load: ${caKey}: not a regular file (a FIFO)`,
    );
    rmSync(caKey);
    symlinkSync('/dev/zero', caKey);
    await expect(DevCa.load({ caCert: join(dir, 'ca.crt'), caKey })).rejects.toThrow(
      `dev CA load: ${caKey}: not a regular file (a device)`,
    );
  });
});
