import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerDevCaCommands } from '../../../src/cli/commands/dev-ca.js';
import { registerSvidCommands } from '../../../src/cli/commands/svid.js';
import type { CliIo } from '../../../src/cli/io.js';
import { MAX_INPUT_FILE_BYTES } from '../../../src/read-file.js';
import { run } from '../../../src/cli/program.js';
import { formatJwksBundle, toPem } from '../../../src/spiffe/index.js';
import {
  EKU,
  KU,
  makeIntermediateCa,
  makeLeaf,
  makeRootCa,
  pemOf,
  withGarbledPublicKey,
  type TestCert,
} from '../../helpers/certs.js';

async function meshauth(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = { out: (t) => (out += t), err: (t) => (err += t), env: {} };
  const code = await run(args, io, [registerSvidCommands, registerDevCaCommands]);
  return { code, out, err };
}

const WEB = 'spiffe://example.org/ns/demo/sa/web';
let dir: string;
let root: TestCert;
let inter: TestCert;
let leaf: TestCert;
const file = (name: string, data: string | Buffer): string => {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-svid-cli-'));
  root = await makeRootCa('example.org');
  inter = await makeIntermediateCa(root, 'example.org', { pathLen: 0 });
  leaf = await makeLeaf(inter, WEB, {
    dns: ['web.demo.svc'],
    keyUsage: KU.digitalSignature | KU.keyEncipherment,
  });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('meshauth svid inspect', () => {
  it('prints the SPIFFE ID, trust domain, serials, validity, key usage and EKU as a table', async () => {
    const r = await meshauth('svid', 'inspect', file('chain.pem', pemOf(leaf, inter)));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toBe(`SPIFFE ID        ${WEB}`);
    expect(lines[1]).toBe('trust domain     example.org');
    expect(lines[2]).toBe('X509-SVID rules  ok');
    expect(lines[3]).toMatch(/^validity {9}\d{4}-.+Z \.\. \d{4}-.+Z \(valid, expires in 59m\d+s\)$/);
    expect(lines[4]).toBe('chain            2 certificates');
    expect(lines[5]).toBe(
      `serials          ${leaf.cert.serialNumber.toUpperCase()}, ${inter.cert.serialNumber.toUpperCase()}`,
    );
    expect(r.out).toContain('\ncertificate 0 (leaf)\n');
    expect(r.out).toContain('\ncertificate 1 (intermediate)\n');
    expect(r.out).toMatch(/\n {2}key usage {6}digitalSignature, keyEncipherment\n/);
    expect(r.out).toMatch(/\n {2}ext key usage {2}serverAuth, clientAuth\n/);
    expect(r.out).toMatch(/\n {2}DNS SANs {7}web\.demo\.svc\n/);
    expect(r.out).toMatch(/\n {2}CA {13}true \(path length 0\)\n/);
    expect(r.out).toMatch(/\n {2}key usage {6}keyCertSign, cRLSign\n/);
    expect(r.out).toMatch(/\n {2}ext key usage {2}\(absent\)\n/);
    expect(r.out).toMatch(/\n {2}public key {5}EC P-256\n/);
  });

  it('prints one JSON object with -o json, for PEM and DER alike', async () => {
    for (const p of [
      file('chain2.pem', pemOf(leaf, inter, root)),
      file('chain2.der', Buffer.concat([leaf.der, inter.der, root.der])),
    ]) {
      const r = await meshauth('svid', 'inspect', p, '-o', 'json');
      expect(r.code).toBe(0);
      expect(r.out.trimEnd().split('\n')).toHaveLength(1);
      const j = JSON.parse(r.out) as {
        spiffeId: string;
        trustDomain: string;
        svidRules: { ok: boolean };
        validity: string;
        serials: string[];
        certificates: Array<{
          role: string;
          keyUsage: string[] | null;
          extKeyUsage: string[] | null;
          notAfter: string;
          uriSans: string[];
          ca: boolean;
        }>;
      };
      expect(j.spiffeId).toBe(WEB);
      expect(j.trustDomain).toBe('example.org');
      expect(j.svidRules).toEqual({ ok: true });
      expect(j.validity).toBe('valid');
      expect(j.serials).toEqual([leaf, inter, root].map((c) => c.cert.serialNumber.toUpperCase()));
      expect(j.certificates.map((c) => c.role)).toEqual(['leaf', 'intermediate', 'root']);
      expect(j.certificates[0]).toMatchObject({
        keyUsage: ['digitalSignature', 'keyEncipherment'],
        extKeyUsage: ['serverAuth', 'clientAuth'],
        uriSans: [WEB],
        ca: false,
        notAfter: leaf.cert.notAfter.toISOString(),
      });
      expect(j.certificates[2]!.extKeyUsage).toBeNull();
    }
  });

  it('shows which X509-SVID rule a certificate breaks and that it expired, but still exits 0', async () => {
    const bad = await makeLeaf(root, WEB, {
      keyUsage: KU.digitalSignature | KU.keyCertSign,
      eku: [EKU.serverAuth],
      notBefore: new Date(Date.now() - 7_200_000),
      notAfter: new Date(Date.now() - 60_000),
    });
    const r = await meshauth('svid', 'inspect', file('bad.pem', bad.pem));
    expect(r.code).toBe(0);
    expect(r.out).toContain(`SPIFFE ID        ${WEB}\n`);
    expect(r.out).toContain(
      'X509-SVID rules  FAILED leaf-key-cert-sign: verify X509-SVID: leaf KeyUsage has keyCertSign\n',
    );
    expect(r.out).toMatch(/\(EXPIRED\)\n/);
    const j = JSON.parse((await meshauth('svid', 'inspect', file('bad.pem', bad.pem), '-o', 'json')).out) as {
      svidRules: unknown;
      validity: string;
    };
    expect(j.svidRules).toMatchObject({ ok: false, reason: 'leaf-key-cert-sign' });
    expect(j.validity).toBe('expired');
  });

  it('lists critical extensions, marks one validation does not handle, and does not call the rules ok', async () => {
    const fixtures = join(import.meta.dirname, '..', '..', 'fixtures', 'critical-extension');
    const r = await meshauth('svid', 'inspect', join(fixtures, 'leaf.pem'));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(
      'X509-SVID rules  FAILED unhandled-critical-extension: certificate 0 (leaf) has critical extension 1.3.6.1.4.1.55555.1, which validation does not handle (RFC 5280 §4.2)\n',
    );
    expect(r.out).toMatch(
      /\n {2}critical {7}basicConstraints, keyUsage, 1\.3\.6\.1\.4\.1\.55555\.1 \(NOT HANDLED\)\n/,
    );
    const j = JSON.parse(
      (await meshauth('svid', 'inspect', join(fixtures, 'leaf.pem'), '-o', 'json')).out,
    ) as {
      svidRules: unknown;
      certificates: Array<{ criticalExtensions: unknown }>;
    };
    expect(j.svidRules).toMatchObject({ ok: false, reason: 'unhandled-critical-extension' });
    expect(j.certificates[0]!.criticalExtensions).toEqual([
      { oid: '2.5.29.19', name: 'basicConstraints', handled: true },
      { oid: '2.5.29.15', name: 'keyUsage', handled: true },
      { oid: '1.3.6.1.4.1.55555.1', name: null, handled: false },
    ]);
    // svid verify refuses it for the same reason
    const v = await meshauth(
      'svid',
      'verify',
      '--bundle',
      join(fixtures, 'ca.pem'),
      join(fixtures, 'leaf.pem'),
    );
    expect(v.code).toBe(1);
    expect(v.out).toMatch(/^invalid: unhandled-critical-extension: /);
    // the same SVID without that extension: rules ok, nothing marked
    const control = await meshauth('svid', 'inspect', join(fixtures, 'control.pem'));
    expect(control.out).toContain('X509-SVID rules  ok\n');
    expect(control.out).toMatch(/\n {2}critical {7}\S/);
    expect(control.out).not.toContain('NOT HANDLED');
  });

  it('checks the critical extensions of every certificate of the chain, not only the leaf', async () => {
    const fixtures = join(import.meta.dirname, '..', '..', 'fixtures', 'critical-extension');
    // the fixture leaf placed second: its own leaf rules are not checked there, its extension is
    const chain = file('crit-second.pem', leaf.pem + readFileSync(join(fixtures, 'leaf.pem'), 'latin1'));
    const j = JSON.parse((await meshauth('svid', 'inspect', chain, '-o', 'json')).out) as {
      svidRules: { ok: boolean; reason?: string; message?: string };
    };
    expect(j.svidRules).toMatchObject({ ok: false, reason: 'unhandled-critical-extension' });
    expect(j.svidRules.message).toMatch(
      /^certificate 1 \(\w+\) has critical extension 1\.3\.6\.1\.4\.1\.55555\.1/,
    );
  });

  it('fails with exit 1 on a missing file or bytes that are not certificates', async () => {
    const missing = await meshauth('svid', 'inspect', join(dir, 'nope.pem'));
    expect(missing.code).toBe(1);
    expect(missing.err).toBe(`meshauth: svid inspect: ${join(dir, 'nope.pem')}: no such file\n`);
    const junk = await meshauth('svid', 'inspect', file('junk.pem', 'hello'));
    expect(junk.code).toBe(1);
    expect(junk.err).toMatch(/^meshauth: svid inspect: .*junk\.pem: not a PEM or DER certificate chain \(/);
    const broken = await meshauth(
      'svid',
      'inspect',
      file('broken.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'),
    );
    expect(broken.code).toBe(1);
    expect(broken.err).toContain('certificate 0 is malformed (certificate is not a SEQUENCE)');
    expect(broken.out).toBe('');
    // a SEQUENCE, but not a certificate: said so, not OpenSSL's "no start line" from its PEM fallback
    const seq = await meshauth(
      'svid',
      'inspect',
      file('seq.der', Buffer.from([0x30, 0x03, 0x30, 0x01, 0x00])),
    );
    expect(seq.code).toBe(1);
    expect(seq.err).toMatch(/certificate 0 is malformed \(.+\)\n$/);
    expect(seq.err).not.toMatch(/no start line/);
  });

  it('says a PEM body that is not base64 is bad base64, with its line, not "no start line"', async () => {
    const lines = leaf.pem.split('\n');
    lines[3] = `${lines[3]!.slice(0, 10)}!@#${lines[3]!.slice(13)}`;
    const r = await meshauth('svid', 'inspect', file('bad-b64.pem', lines.join('\n')));
    expect(r).toEqual({
      code: 1,
      out: '',
      err: `meshauth: svid inspect: ${join(dir, 'bad-b64.pem')}: not a PEM or DER certificate chain (CERTIFICATE block 0: bad base64 in the PEM body: character "!" on line 4)\n`,
    });
    // the second block of a chain, and a body cut short
    const second = pemOf(leaf, inter).replace(
      /(-----BEGIN CERTIFICATE-----\n[\s\S]*?-----BEGIN CERTIFICATE-----\n.{5})./,
      '$1*',
    );
    expect((await meshauth('svid', 'inspect', file('bad-b64-2.pem', second))).err).toMatch(
      /CERTIFICATE block 1: bad base64 in the PEM body: character "\*" on line \d+\)\n$/,
    );
    const body = leaf.pem.replace(/-----[A-Z ]+-----|\s/g, '');
    const cut = `-----BEGIN CERTIFICATE-----\n${body.slice(0, 201)}\n-----END CERTIFICATE-----\n`;
    expect((await meshauth('svid', 'inspect', file('cut.pem', cut))).err).toMatch(
      /CERTIFICATE block 0: bad base64 in the PEM body: 201 characters, not a multiple of 4 \(cut short\?\)\)\n$/,
    );
  });

  it('refuses what is not a regular file, or is too large, without blocking: FIFO, device, directory, symlink to one', async () => {
    const fifo = join(dir, 'chain.fifo');
    execFileSync('mkfifo', [fifo]);
    symlinkSync(dir, join(dir, 'dir-link'));
    const huge = join(dir, 'huge.pem');
    writeFileSync(huge, '');
    truncateSync(huge, MAX_INPUT_FILE_BYTES + 1);
    const cases: Array<[string, string]> = [
      // A FIFO with no writer used to block the read (and the process, SIGTERM included) for ever.
      [fifo, 'not a regular file (a FIFO)'],
      // /dev/zero used to be read until memory ran out.
      ['/dev/zero', 'not a regular file (a device)'],
      [dir, 'is a directory, not a file'],
      [join(dir, 'dir-link'), 'is a directory, not a file'],
      [huge, `larger than ${MAX_INPUT_FILE_BYTES} bytes (${MAX_INPUT_FILE_BYTES + 1})`],
    ];
    for (const [path, why] of cases) {
      const r = await meshauth('svid', 'inspect', path);
      expect(r.err, path).toBe(`meshauth: svid inspect: ${path}: ${why}\n`);
      expect(r.code, path).toBe(1);
      expect(r.out, path).toBe('');
    }
    const bundle = file('fifo-ok.pem', pemOf(root));
    const v = await meshauth('svid', 'verify', '--bundle', fifo, '--trust-domain', 'example.org', bundle);
    expect(v.err).toBe(`meshauth: svid verify: --bundle: ${fifo}: not a regular file (a FIFO)\n`);
    expect(v.code).toBe(1);
  });

  it('names a certificate whose public key cannot be parsed, with its reason code', async () => {
    const garbled = file('garbled.pem', toPem([withGarbledPublicKey(leaf.der), inter.der]));
    const r = await meshauth('svid', 'inspect', garbled);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(
      /^meshauth: svid inspect: .*garbled\.pem: bad-public-key: certificate 0 has an unusable public key: the SubjectPublicKeyInfo does not parse as a key: \S.*\n$/,
    );
  });

  it('refuses an unknown output format with exit 2', async () => {
    const r = await meshauth('svid', 'inspect', file('c.pem', leaf.pem), '-o', 'yaml');
    expect(r.code).toBe(2);
    expect(r.err).toContain('-o/--output: must be table or json (got "yaml")');
  });
});

describe('meshauth svid verify', () => {
  it('exits 0 and summarises a valid chain', async () => {
    const bundle = file('ca.pem', root.pem);
    const chain = file('web.pem', pemOf(leaf, inter));
    const r = await meshauth('svid', 'verify', '--bundle', bundle, chain);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      `valid: ${WEB} (trust domain example.org), 2 certificates, leaf serial ${leaf.cert.serialNumber.toUpperCase()}, valid until ${leaf.cert.notAfter.toISOString()}\n`,
    );
  });

  it('accepts a JWKS bundle with --trust-domain and checks the key with --key', async () => {
    const bundle = file(
      'bundle.json',
      formatJwksBundle({ trustDomain: 'example.org', x509Authorities: [root.der] }),
    );
    const chain = file('web.der', Buffer.concat([leaf.der, inter.der]));
    const key = file('web.key', leaf.keyPem);
    const r = await meshauth(
      'svid',
      'verify',
      '--bundle',
      bundle,
      '--trust-domain',
      'example.org',
      '--key',
      key,
      chain,
      '-o',
      'json',
    );
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({
      ok: true,
      spiffeId: WEB,
      trustDomain: 'example.org',
      keyChecked: true,
      serials: [leaf.cert.serialNumber.toUpperCase(), inter.cert.serialNumber.toUpperCase()],
    });
  });

  it('says a --key whose PEM body is not base64 is bad base64, not "DECODER routines::unsupported"', async () => {
    const lines = leaf.keyPem.split('\n');
    lines[2] = `!${lines[2]!.slice(1)}`;
    const key = file('bad-b64.key', lines.join('\n'));
    const chain = file('web-chain.pem', pemOf(leaf, inter));
    const r = await meshauth('svid', 'verify', '--bundle', file('root.pem', root.pem), '--key', key, chain);
    expect(r).toEqual({
      code: 1,
      out: '',
      err: `meshauth: svid verify: --key ${key}: not a private key (PRIVATE KEY block 0: bad base64 in the PEM body: character "!" on line 3)\n`,
    });
  });

  const failures: Array<[what: string, reason: string, setup: () => Promise<{ args: string[] }>]> = [
    [
      'untrusted CA',
      'untrusted',
      async () => {
        const other = await makeRootCa('example.org');
        return { args: ['--bundle', file('other-ca.pem', other.pem), file('w1.pem', pemOf(leaf, inter))] };
      },
    ],
    [
      'expired leaf',
      'expired',
      async () => {
        const old = await makeLeaf(root, WEB, {
          notBefore: new Date(Date.now() - 7_200_000),
          notAfter: new Date(Date.now() - 1000),
        });
        return { args: ['--bundle', file('ca1.pem', root.pem), file('old.pem', old.pem)] };
      },
    ],
    [
      'not yet valid at --at',
      'not-yet-valid',
      async () => ({
        args: [
          '--bundle',
          file('ca2.pem', root.pem),
          '--at',
          '2000-01-01T00:00:00Z',
          file('w2.pem', pemOf(leaf, inter)),
        ],
      }),
    ],
    [
      'bundle of another trust domain',
      'no-bundle',
      async () => ({
        args: [
          '--bundle',
          file('ca3.pem', root.pem),
          '--trust-domain',
          'other.org',
          file('w3.pem', pemOf(leaf, inter)),
        ],
      }),
    ],
    [
      'two URI SANs',
      'multiple-uri-sans',
      async () => {
        const two = await makeLeaf(root, WEB, { uris: [WEB, 'spiffe://example.org/x'] });
        return { args: ['--bundle', file('ca4.pem', root.pem), file('two.pem', two.pem)] };
      },
    ],
    [
      'wrong key',
      'key-mismatch',
      async () => ({
        args: [
          '--bundle',
          file('ca5.pem', root.pem),
          '--key',
          file('root.key', root.keyPem),
          file('w5.pem', pemOf(leaf, inter)),
        ],
      }),
    ],
    [
      'leaf with an unknown critical extension (RFC 5280 §4.2)',
      'unhandled-critical-extension',
      async () => {
        const dir = join(import.meta.dirname, '..', '..', 'fixtures', 'critical-extension');
        return { args: ['--bundle', join(dir, 'ca.pem'), join(dir, 'leaf.pem')] };
      },
    ],
    [
      'intermediate without keyCertSign',
      'bad-intermediate',
      async () => {
        const weak = await makeIntermediateCa(root, 'example.org', { keyUsage: KU.cRLSign });
        const l = await makeLeaf(weak, WEB);
        return { args: ['--bundle', file('ca7.pem', root.pem), file('w7.pem', pemOf(l, weak))] };
      },
    ],
    [
      'malformed chain',
      'malformed',
      async () => ({
        args: ['--bundle', file('ca6.pem', root.pem), file('junk.der', Buffer.from([0x30, 0x05, 1]))],
      }),
    ],
  ];

  it.each(failures)('%s: exit 1 with reason %s', async (_what, reason, setup) => {
    const { args } = await setup();
    const r = await meshauth('svid', 'verify', ...args);
    expect(r.code).toBe(1);
    expect(r.err).toBe('');
    expect(r.out).toMatch(new RegExp(`^invalid: ${reason}: verify X509-SVID: .+\\n$`));
    const j = await meshauth('svid', 'verify', ...args, '-o', 'json');
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toMatchObject({ ok: false, reason });
  });

  it('says bad-public-key for a leaf or bundle authority whose public key cannot be parsed', async () => {
    const bundle = file('root-ok.pem', root.pem);
    const badLeaf = file('garbled-leaf.pem', toPem([withGarbledPublicKey(leaf.der), inter.der]));
    // with and without --trust-domain: the leaf's trust domain is read from the garbled leaf
    for (const td of [[], ['--trust-domain', 'example.org']]) {
      const r = await meshauth('svid', 'verify', '--bundle', bundle, ...td, badLeaf);
      expect(r.code).toBe(1);
      expect(r.err).toBe('');
      expect(r.out).toMatch(
        /^invalid: bad-public-key: verify X509-SVID: leaf has an unusable public key: the SubjectPublicKeyInfo does not parse as a key: \S.*\n$/,
      );
      const j = await meshauth('svid', 'verify', '--bundle', bundle, ...td, badLeaf, '-o', 'json');
      expect(JSON.parse(j.out)).toMatchObject({ ok: false, reason: 'bad-public-key' });
    }
    const badRoot = file('garbled-root.pem', toPem([withGarbledPublicKey(root.der)]));
    const chain = file('ok-chain.pem', pemOf(leaf, inter));
    const b = await meshauth('svid', 'verify', '--bundle', badRoot, chain);
    expect(b.code).toBe(1);
    expect(b.out).toMatch(
      /^error: bundle-invalid: --bundle .*garbled-root\.pem: parse bundle: authority 0 of "example\.org" has an unusable public key: the SubjectPublicKeyInfo does not parse as a key: /,
    );
  });

  it('explains bad bundles, missing files and usage errors', async () => {
    const chain = file('w6.pem', pemOf(leaf, inter));
    const leafAsBundle = await meshauth(
      'svid',
      'verify',
      '--bundle',
      file('leaf-bundle.pem', leaf.pem),
      chain,
    );
    expect(leafAsBundle.code).toBe(1);
    expect(leafAsBundle.err).toBe('');
    expect(leafAsBundle.out).toMatch(
      /^error: bundle-invalid: --bundle .*leaf-bundle\.pem: parse bundle: authority 0 of "example.org" is not a CA certificate\n$/,
    );
    const leafAsBundleJson = await meshauth(
      'svid',
      'verify',
      '--bundle',
      file('leaf-bundle.pem', leaf.pem),
      chain,
      '-o',
      'json',
    );
    expect(leafAsBundleJson.code).toBe(1);
    expect(JSON.parse(leafAsBundleJson.out)).toMatchObject({ ok: false, reason: 'bundle-invalid' });

    // More authorities than a bundle may hold: refused before any is used as a trust anchor.
    const huge = await meshauth(
      'svid',
      'verify',
      '--bundle',
      file('huge-bundle.pem', Array.from({ length: 257 }, () => root.pem).join('')),
      chain,
      '-o',
      'json',
    );
    expect(huge.code).toBe(1);
    expect(JSON.parse(huge.out)).toMatchObject({ ok: false, reason: 'bundle-invalid' });
    expect((JSON.parse(huge.out) as { message: string }).message).toContain(
      '257 X.509 authorities, more than 256',
    );

    const noBundle = await meshauth('svid', 'verify', '--bundle', join(dir, 'absent.pem'), chain);
    expect(noBundle.code).toBe(1);
    expect(noBundle.err).toContain('absent.pem: no such file');

    const noFlag = await meshauth('svid', 'verify', chain);
    expect(noFlag.code).toBe(2);
    expect(noFlag.err).toContain("required option '--bundle <file>' not specified");

    const badTd = await meshauth(
      'svid',
      'verify',
      '--bundle',
      file('ca7.pem', root.pem),
      '--trust-domain',
      'Bad.Org',
      chain,
    );
    expect(badTd.code).toBe(2);
    expect(badTd.err).toContain('--trust-domain: parse trust domain "Bad.Org"');

    const badAt = await meshauth(
      'svid',
      'verify',
      '--bundle',
      file('ca8.pem', root.pem),
      '--at',
      'yesterday',
      chain,
    );
    expect(badAt.code).toBe(2);
  });

  it('exits 2 on usage errors: a missing required option or an unknown flag', async () => {
    const chain = file('usage-chain.pem', pemOf(leaf, inter));
    const noBundle = await meshauth('svid', 'verify', chain);
    expect(noBundle.err).toContain('--bundle');
    expect(noBundle.code).toBe(2);
    const bundle = file('usage-bundle.pem', root.pem);
    const unknown = await meshauth('svid', 'verify', '--bundle', bundle, '--no-such-flag', chain);
    expect(unknown.err).toContain('--no-such-flag');
    expect(unknown.code).toBe(2);
  });

  it('documents itself in --help', async () => {
    const r = await meshauth('svid', 'verify', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('--bundle <file>');
    expect(r.out).toContain('--trust-domain <td>');
    expect(r.out).toContain('Exit status: 0 when the chain is a valid X509-SVID, 1 when it is not');
  });
});
