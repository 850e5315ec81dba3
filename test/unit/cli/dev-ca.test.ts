import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { registerDevCaCommands } from '../../../src/cli/commands/dev-ca.js';
import { registerSvidCommands } from '../../../src/cli/commands/svid.js';
import type { CliIo } from '../../../src/cli/io.js';
import { run } from '../../../src/cli/program.js';
import { keyMatchesLeaf, parseBundle, verifyX509Svid } from '../../../src/spiffe/index.js';

async function meshauth(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = { out: (t) => (out += t), err: (t) => (err += t), env: {} };
  const code = await run(args, io, [registerSvidCommands, registerDevCaCommands]);
  return { code, out, err };
}

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'meshauth-devca-cli-'));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const WEB = 'spiffe://demo.local/ns/demo/sa/web';

describe('meshauth dev-ca init', () => {
  it('creates a CA (key 0600), then reuses it and says so', async () => {
    const base = tmp();
    const dir = join(base, 'ca');
    const first = await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local');
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    expect(first.out).toMatch(/^created a new development CA for trust domain demo\.local\n/);
    expect(first.out).toContain(`  certificate  ${join(dir, 'ca.crt')}\n`);
    expect(first.out).toContain(`  key          ${join(dir, 'ca.key')} (mode 0600)\n`);
    expect(statSync(join(dir, 'ca.key')).mode & 0o777).toBe(0o600);
    const caPem = readFileSync(join(dir, 'ca.crt'), 'utf8');
    const ca = new X509Certificate(caPem);
    expect(ca.ca).toBe(true);
    expect(ca.subjectAltName).toBe('URI:spiffe://demo.local');

    const again = await meshauth(
      'dev-ca',
      'init',
      '--dir',
      dir,
      '--trust-domain',
      'demo.local',
      '-o',
      'json',
    );
    expect(again.code).toBe(0);
    const j = JSON.parse(again.out) as {
      created: boolean;
      trustDomain: string;
      sha256: string;
      caKey: string;
    };
    expect(j).toMatchObject({
      created: false,
      trustDomain: 'demo.local',
      sha256: ca.fingerprint256,
      caKey: join(dir, 'ca.key'),
    });
    expect(readFileSync(join(dir, 'ca.crt'), 'utf8')).toBe(caPem);

    const table = await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local');
    expect(table.out).toMatch(/^reusing the existing development CA for trust domain demo\.local\n/);
  });

  it('refuses a CA of another trust domain and an invalid trust domain', async () => {
    const dir = tmp();
    expect((await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local')).code).toBe(0);
    const other = await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'other.local');
    expect(other.code).toBe(1);
    expect(other.err).toContain('is for trust domain "demo.local", not "other.local"');
    const bad = await meshauth('dev-ca', 'init', '--dir', tmp(), '--trust-domain', 'Demo.Local');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('dev-ca init: --trust-domain: parse trust domain "Demo.Local"');
    const missing = await meshauth('dev-ca', 'init', '--dir', tmp());
    expect(missing.code).toBe(2);
    expect(missing.err).toContain("required option '--trust-domain <td>' not specified");
  });
});

describe('meshauth dev-ca issue', () => {
  it('writes <prefix>.crt and <prefix>.key (0600) that verify against the CA and match', async () => {
    const dir = tmp();
    await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local');
    const prefix = join(dir, 'out', 'web');
    const r = await meshauth(
      'dev-ca',
      'issue',
      '--dir',
      dir,
      '--spiffe-id',
      WEB,
      '--ttl',
      '10m',
      '--out',
      prefix,
    );
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      new RegExp(`^issued ${WEB}\\n {2}serial {7}[0-9A-F]+\\n {2}valid {8}\\S+ \\.\\. \\S+ \\(10m\\)\\n`),
    );
    expect(statSync(`${prefix}.key`).mode & 0o777).toBe(0o600);
    // no temporary files left behind
    expect(readdirSync(join(dir, 'out')).sort()).toEqual(['web.crt', 'web.key']);

    const bundle = parseBundle(readFileSync(join(dir, 'ca.crt')), 'demo.local');
    const v = verifyX509Svid(
      readFileSync(`${prefix}.crt`),
      new Map([['demo.local', bundle.x509Authorities]]),
    );
    expect(v.spiffeId.toString()).toBe(WEB);
    const ttl = v.notAfter.getTime() - Date.now();
    expect(ttl).toBeGreaterThan(9 * 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000);
    expect(keyMatchesLeaf(createPrivateKey(readFileSync(`${prefix}.key`)), v.leaf)).toBe(true);

    // and the svid command agrees
    const check = await meshauth(
      'svid',
      'verify',
      '--bundle',
      join(dir, 'ca.crt'),
      '--key',
      `${prefix}.key`,
      `${prefix}.crt`,
    );
    expect(check.code).toBe(0);
    expect(check.out).toMatch(/, key matches\n$/);
  });

  it('re-issuing replaces both files with a new key and serial (default TTL 1h)', async () => {
    const dir = tmp();
    await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local');
    const prefix = join(dir, 'web');
    const a = JSON.parse(
      (await meshauth('dev-ca', 'issue', '--dir', dir, '--spiffe-id', WEB, '--out', prefix, '-o', 'json'))
        .out,
    ) as {
      serial: string;
      notAfter: string;
      cert: string;
      key: string;
    };
    const keyA = readFileSync(`${prefix}.key`, 'utf8');
    const b = JSON.parse(
      (await meshauth('dev-ca', 'issue', '--dir', dir, '--spiffe-id', WEB, '--out', prefix, '-o', 'json'))
        .out,
    ) as { serial: string };
    expect(a.cert).toBe(`${prefix}.crt`);
    expect(a.key).toBe(`${prefix}.key`);
    expect(Date.parse(a.notAfter) - Date.now()).toBeGreaterThan(59 * 60_000);
    expect(b.serial).not.toBe(a.serial);
    expect(readFileSync(`${prefix}.key`, 'utf8')).not.toBe(keyA);
    expect(new X509Certificate(readFileSync(`${prefix}.crt`)).serialNumber.toUpperCase()).toBe(b.serial);
    expect(statSync(`${prefix}.key`).mode & 0o777).toBe(0o600);
  });

  it('explains a missing CA, a foreign SPIFFE ID, an invalid SPIFFE ID and a bad TTL', async () => {
    const empty = tmp();
    const none = await meshauth(
      'dev-ca',
      'issue',
      '--dir',
      empty,
      '--spiffe-id',
      WEB,
      '--out',
      join(empty, 'x'),
    );
    expect(none.code).toBe(1);
    expect(none.err).toContain(`no development CA in ${empty} (create it with: meshauth dev-ca init`);

    const dir = tmp();
    await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local');
    const foreign = await meshauth(
      'dev-ca',
      'issue',
      '--dir',
      dir,
      '--spiffe-id',
      'spiffe://other.local/ns/a',
      '--out',
      join(dir, 'x'),
    );
    expect(foreign.code).toBe(1);
    expect(foreign.err).toContain('is not in trust domain "demo.local"');

    const invalid = await meshauth(
      'dev-ca',
      'issue',
      '--dir',
      dir,
      '--spiffe-id',
      'spiffe://demo.local/ns/',
      '--out',
      join(dir, 'x'),
    );
    expect(invalid.code).toBe(2);
    expect(invalid.err).toContain('path cannot have a trailing slash');

    for (const ttl of ['forever', '0s', '500ms', '']) {
      const r = await meshauth(
        'dev-ca',
        'issue',
        '--dir',
        dir,
        '--spiffe-id',
        WEB,
        '--ttl',
        ttl,
        '--out',
        join(dir, 'x'),
      );
      expect(r.code).toBe(2);
      expect(r.err).toContain('--ttl: must be a duration of at least 1s');
    }
    // nothing was written by the failed attempts
    expect(readdirSync(dir).sort()).toEqual(['ca.crt', 'ca.key']);
  });

  it("regression: --out naming the CA's own files or a directory is refused and the CA stays", async () => {
    const dir = tmp();
    await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local');
    const before = { crt: readFileSync(join(dir, 'ca.crt')), key: readFileSync(join(dir, 'ca.key')) };
    // before: <dir>/ca.crt and ca.key were replaced by a leaf and its key, the CA lost for good
    for (const out of [join(dir, 'ca'), `${dir}/../${basename(dir)}/ca`]) {
      const r = await meshauth('dev-ca', 'issue', '--dir', dir, '--spiffe-id', WEB, '--out', out);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`dev-ca issue: --out ${out}: would overwrite the development CA's own`);
    }
    // a symlink to the CA certificate is the CA certificate
    symlinkSync(join(dir, 'ca.crt'), join(dir, 'alias.crt'));
    const viaLink = await meshauth(
      'dev-ca',
      'issue',
      '--dir',
      dir,
      '--spiffe-id',
      WEB,
      '--out',
      join(dir, 'alias'),
    );
    expect(viaLink.code).toBe(2);
    expect(viaLink.err).toContain(`would overwrite the development CA's own ${join(dir, 'ca.crt')}`);
    // before: "--out <dir>/" wrote <dir>.crt and <dir>.key beside the directory
    for (const out of [`${dir}/`, dir]) {
      const r = await meshauth('dev-ca', 'issue', '--dir', dir, '--spiffe-id', WEB, '--out', out);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`--out ${out}: is a directory; --out is a path prefix`);
    }
    expect(existsSync(`${dir}.crt`)).toBe(false);
    expect(readFileSync(join(dir, 'ca.crt'))).toEqual(before.crt);
    expect(readFileSync(join(dir, 'ca.key'))).toEqual(before.key);
    expect(readdirSync(dir).sort()).toEqual(['alias.crt', 'ca.crt', 'ca.key']);
  });

  it("regression: a --ttl past the CA's expiry prints the lifetime issued and says it was capped", async () => {
    const dir = tmp();
    await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local');
    const caNotAfter = new Date(new X509Certificate(readFileSync(join(dir, 'ca.crt'))).validTo).getTime();
    for (const ttl of ['1000w', `${'9'.repeat(30)}w`]) {
      const r = await meshauth(
        'dev-ca',
        'issue',
        '--dir',
        dir,
        '--spiffe-id',
        WEB,
        '--ttl',
        ttl,
        '--out',
        join(dir, 'w'),
      );
      expect(r.code).toBe(0);
      const leaf = new X509Certificate(readFileSync(join(dir, 'w.crt')));
      expect(new Date(leaf.validTo).getTime()).toBe(caNotAfter);
      // before: "(7000d)" and "(6.999999999999999e+23d)", lifetimes never issued
      expect(r.out).toMatch(
        new RegExp(`\\((364d23h59m5\\ds|365d); --ttl ${ttl} capped at the CA's expiry\\)\\n`),
      );
    }
    const plain = await meshauth(
      'dev-ca',
      'issue',
      '--dir',
      dir,
      '--spiffe-id',
      WEB,
      '--ttl',
      '2h',
      '--out',
      join(dir, 'w'),
    );
    expect(plain.out).toMatch(/ \(2h\)\n/);
  });

  it('regression: a directory that cannot be made fails with its reason instead of hanging', async () => {
    // before: Node's recursive mkdir retried /proc/1 for ever (ENOENT from a parent that exists)
    const init = await meshauth(
      'dev-ca',
      'init',
      '--dir',
      '/proc/1/meshauth-dev-ca',
      '--trust-domain',
      'demo.local',
    );
    expect(init.code).toBe(1);
    expect(init.err).toBe(
      'meshauth: dev-ca init: --dir /proc/1/meshauth-dev-ca: cannot create it: no such file\n',
    );

    const dir = tmp();
    await meshauth('dev-ca', 'init', '--dir', dir, '--trust-domain', 'demo.local');
    const out = await meshauth('dev-ca', 'issue', '--dir', dir, '--spiffe-id', WEB, '--out', '/proc/1/x/web');
    expect(out.code).toBe(1);
    expect(out.err).toBe(
      'meshauth: dev-ca issue: --out /proc/1/x/web: cannot create /proc/1/x: no such file\n',
    );
    // a file the key cannot be written to is named, not the temporary file beside it
    const unwritable = await meshauth(
      'dev-ca',
      'issue',
      '--dir',
      dir,
      '--spiffe-id',
      WEB,
      '--out',
      '/proc/web',
    );
    expect(unwritable.code).toBe(1);
    expect(unwritable.err).toMatch(/^meshauth: dev-ca issue: cannot write \/proc\/web\.key: /);
    expect(unwritable.err).not.toContain('.tmp');
  });
});
