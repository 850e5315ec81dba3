import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  WireguardError,
  decodeWireguardKey,
  encodeWireguardKey,
  generatePrivateKey,
  isWireguardKey,
  loadOrCreateNodeKey,
  privateKeyPath,
  publicKeyPath,
  publicKeyFromPrivate,
} from '../../../src/wireguard/index.js';

// RFC 7748 section 6.1: Alice's X25519 private and public keys.
const RFC_PRIVATE = Buffer.from(
  '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a',
  'hex',
).toString('base64');
const RFC_PUBLIC = Buffer.from(
  '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
  'hex',
).toString('base64');

function hasWg(): boolean {
  try {
    execFileSync('wg', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('WireGuard key encoding', () => {
  it('derives the RFC 7748 public key', () => {
    expect(publicKeyFromPrivate(RFC_PRIVATE)).toBe(RFC_PUBLIC);
  });

  it.skipIf(!hasWg())('agrees with `wg pubkey` on generated keys', () => {
    for (let i = 0; i < 3; i++) {
      const priv = generatePrivateKey();
      const wgPub = execFileSync('wg', ['pubkey'], { input: `${priv}\n`, encoding: 'utf8' }).trim();
      expect(publicKeyFromPrivate(priv)).toBe(wgPub);
    }
  });

  it('generates distinct 32-byte keys in wg format', () => {
    const a = generatePrivateKey();
    const b = generatePrivateKey();
    expect(a).not.toBe(b);
    expect(isWireguardKey(a)).toBe(true);
    expect(decodeWireguardKey(a)).toHaveLength(32);
  });

  it('validates base64 keys strictly', () => {
    expect(isWireguardKey(RFC_PUBLIC)).toBe(true);
    expect(isWireguardKey(`${RFC_PUBLIC}\n`)).toBe(false);
    expect(isWireguardKey(RFC_PUBLIC.slice(0, -1))).toBe(false); // missing padding
    expect(isWireguardKey(Buffer.alloc(31).toString('base64'))).toBe(false);
    expect(isWireguardKey(Buffer.alloc(33).toString('base64'))).toBe(false);
    expect(isWireguardKey(Buffer.alloc(32).toString('base64url'))).toBe(false);
    // last significant character carries bits beyond 256: not a canonical encoding
    expect(isWireguardKey(`${'A'.repeat(42)}B=`)).toBe(false);
    expect(() => decodeWireguardKey('nope', 'peer key')).toThrow(/decode WireGuard peer key/);
    expect(() => encodeWireguardKey(new Uint8Array(16))).toThrow(WireguardError);
    expect(encodeWireguardKey(decodeWireguardKey(RFC_PUBLIC))).toBe(RFC_PUBLIC);
  });
});

describe('node key file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-wgkey-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the key once with mode 0600 in a 0700 directory and reuses it', () => {
    const first = loadOrCreateNodeKey(dir);
    expect(first.created).toBe(true);
    expect(first.privateKeyFile).toBe(privateKeyPath(dir));
    expect(statSync(first.privateKeyFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'wireguard')).mode & 0o777).toBe(0o700);
    const text = readFileSync(first.privateKeyFile, 'utf8');
    expect(text).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(first.publicKey).toBe(publicKeyFromPrivate(text.trim()));
    expect(readFileSync(publicKeyPath(dir), 'utf8')).toBe(`${first.publicKey}\n`);
    const second = loadOrCreateNodeKey(dir);
    expect(second.created).toBe(false);
    expect(second.publicKey).toBe(first.publicKey);
  });

  it('refuses a key file readable by group or others', () => {
    const { privateKeyFile } = loadOrCreateNodeKey(dir);
    for (const mode of [0o640, 0o604, 0o660]) {
      chmodSync(privateKeyFile, mode);
      const err = catchErr(() => loadOrCreateNodeKey(dir));
      expect(err.code).toBe('MESHAUTH_ERR_WIREGUARD_KEY_FILE_MODE');
      expect(err.message).toContain(`mode 0${mode.toString(8)} is too open`);
    }
    chmodSync(privateKeyFile, 0o400);
    expect(loadOrCreateNodeKey(dir).created).toBe(false);
  });

  it('refuses bad content and symlinks', () => {
    const file = privateKeyPath(dir);
    loadOrCreateNodeKey(dir);
    writeFileSync(file, 'not a key\n', { mode: 0o600 });
    expect(catchErr(() => loadOrCreateNodeKey(dir)).code).toBe('MESHAUTH_ERR_WIREGUARD_KEY_INVALID');
    writeFileSync(file, `${RFC_PRIVATE}\n${RFC_PRIVATE}\n`);
    expect(catchErr(() => loadOrCreateNodeKey(dir)).code).toBe('MESHAUTH_ERR_WIREGUARD_KEY_INVALID');
    rmSync(file);
    const target = join(dir, 'elsewhere.key');
    writeFileSync(target, `${RFC_PRIVATE}\n`, { mode: 0o600 });
    symlinkSync(target, file);
    const err = catchErr(() => loadOrCreateNodeKey(dir));
    expect(err.code).toBe('MESHAUTH_ERR_WIREGUARD_KEY_FILE_MODE');
    expect(err.message).toContain('not a regular file');
  });

  it('accepts a key written by hand in wg format', () => {
    const file = privateKeyPath(dir);
    loadOrCreateNodeKey(dir);
    writeFileSync(file, `${RFC_PRIVATE}\n`, { mode: 0o600 });
    expect(loadOrCreateNodeKey(dir).publicKey).toBe(RFC_PUBLIC);
    // the published public key follows the private key
    expect(readFileSync(publicKeyPath(dir), 'utf8')).toBe(`${RFC_PUBLIC}\n`);
  });
});

function catchErr(fn: () => unknown): WireguardError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(WireguardError);
    return err as WireguardError;
  }
  throw new Error('expected an error');
}
