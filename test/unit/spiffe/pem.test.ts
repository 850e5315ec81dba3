import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseCertificates, parsePrivateKey } from '../../../src/spiffe/index.js';
import { makeRootCa } from '../../helpers/certs.js';

describe('parsePrivateKey', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;

  it('reads PKCS#8, SEC1 and PKCS#1 keys as PEM and PKCS#8 and SEC1 as DER', () => {
    const want = ec.export({ format: 'jwk' });
    for (const key of [
      ec.export({ format: 'pem', type: 'pkcs8' }),
      ec.export({ format: 'pem', type: 'sec1' }),
      ec.export({ format: 'der', type: 'pkcs8' }),
      ec.export({ format: 'der', type: 'sec1' }),
    ])
      expect(parsePrivateKey(key).export({ format: 'jwk' })).toEqual(want);
    expect(parsePrivateKey(rsa.export({ format: 'pem', type: 'pkcs1' })).asymmetricKeyType).toBe('rsa');
  });

  it('says which line of a PEM body is not base64, and what is wrong with other input', () => {
    const lines = (ec.export({ format: 'pem', type: 'sec1' }) as string).split('\n');
    lines[1] = `${lines[1]!.slice(0, 7)}%${lines[1]!.slice(8)}`;
    expect(() => parsePrivateKey(`junk before\n${lines.join('\n')}`)).toThrow(
      'EC PRIVATE KEY block 0: bad base64 in the PEM body: character "%" on line 3',
    );
    expect(() => parsePrivateKey('-----BEGIN PRIVATE KEY-----\nAAAA\n')).toThrow(
      'no PEM block with a matching END line',
    );
    // base64 that decodes, to bytes that are no key: OpenSSL's reason, without its code prefix
    expect(() => parsePrivateKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')).toThrow(
      /^[A-Z0-9]+ routines::/,
    );
    expect(() => parsePrivateKey(Buffer.from('hello'))).toThrow(/^[a-z0-9 ]+ routines::/i);
  });

  it('regression: an empty file and a certificate given as a key are named, not in OpenSSL terms', async () => {
    // before: "asn1 encoding routines::not enough data" and "DECODER routines::unsupported"
    expect(() => parsePrivateKey(Buffer.alloc(0))).toThrow(/^empty input$/);
    expect(() => parsePrivateKey('')).toThrow(/^empty input$/);
    const cert = (await makeRootCa('k.test')).pem;
    expect(() => parsePrivateKey(cert + cert)).toThrow(/^no PRIVATE KEY PEM block \(found CERTIFICATE\)$/);
    expect(() => parsePrivateKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')).toThrow(
      /^no PRIVATE KEY PEM block \(found PUBLIC KEY\)$/,
    );
    // an EC, RSA or PKCS#8 key block is parsed as before
    expect(parsePrivateKey(ec.export({ format: 'pem', type: 'sec1' })).asymmetricKeyType).toBe('ec');
  });
});

describe('parseCertificates (PEM)', () => {
  it('reads a chain with text between and around the blocks, and RFC 1421 header lines', async () => {
    const a = await makeRootCa('a.test');
    const b = await makeRootCa('b.test');
    const withHeader = b.pem.replace(
      '-----BEGIN CERTIFICATE-----\n',
      '-----BEGIN CERTIFICATE-----\nX-Note: 1\n\n',
    );
    expect(parseCertificates(`subject=a\n${a.pem}Bag Attributes\n${withHeader}trailing`)).toEqual([
      a.der,
      b.der,
    ]);
  });

  it('refuses a body with characters outside base64, padding in the middle, or cut short', async () => {
    const a = await makeRootCa('a.test');
    const body = a.der.toString('base64');
    const pem = (text: string) => `-----BEGIN CERTIFICATE-----\n${text}\n-----END CERTIFICATE-----\n`;
    expect(() => parseCertificates(a.pem + pem(`${body.slice(0, 8)}-${body.slice(9)}`))).toThrow(
      /^CERTIFICATE block 1: bad base64 in the PEM body: character "-" on line \d+$/,
    );
    expect(() => parseCertificates(pem(`${body.slice(0, 8)}=\n${body.slice(8)}`))).toThrow(
      'CERTIFICATE block 0: bad base64 in the PEM body: "=" padding before the end on line 2',
    );
    expect(() => parseCertificates(pem(body.slice(0, 41)))).toThrow(
      'CERTIFICATE block 0: bad base64 in the PEM body: 41 characters, not a multiple of 4 (cut short?)',
    );
    expect(() => parseCertificates(pem(''))).toThrow('CERTIFICATE block 0: empty PEM body');
  });
});
