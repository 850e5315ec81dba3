import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  lstatSync,
  openSync,
  readFileSync,
  renameSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { WireguardError } from './errors.js';
import { makeDirsSync } from '../make-dirs.js';

/** Length in bytes of every WireGuard key (Curve25519). */
export const WIREGUARD_KEY_BYTES = 32;

// Standard base64 of 32 bytes: 43 significant characters, the last one carrying only 2 bits, then '='.
const KEY_PATTERN = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

// DER prefixes of PKCS#8 private and SPKI public X25519 keys (RFC 8410); the raw 32 bytes follow.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** True when `text` is a WireGuard key as `wg` prints it: standard base64 of exactly 32 bytes. */
export function isWireguardKey(text: string): boolean {
  return KEY_PATTERN.test(text);
}

/** Decodes a base64 WireGuard key; throws MESHAUTH_ERR_WIREGUARD_KEY_INVALID when malformed. */
export function decodeWireguardKey(text: string, what = 'key'): Buffer {
  if (!isWireguardKey(text)) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_KEY_INVALID',
      `decode WireGuard ${what}: expected base64 of ${WIREGUARD_KEY_BYTES} bytes (44 characters ending in '=')`,
    );
  }
  return Buffer.from(text, 'base64');
}

/** Encodes 32 raw bytes as a WireGuard key. */
export function encodeWireguardKey(raw: Uint8Array): string {
  if (raw.length !== WIREGUARD_KEY_BYTES) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_KEY_INVALID',
      `encode WireGuard key: expected ${WIREGUARD_KEY_BYTES} bytes, got ${raw.length}`,
    );
  }
  return Buffer.from(raw).toString('base64');
}

/** A fresh X25519 private key, base64 (the format of `wg genkey`). */
export function generatePrivateKey(): string {
  const { privateKey } = generateKeyPairSync('x25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  return encodeWireguardKey(der.subarray(der.length - WIREGUARD_KEY_BYTES));
}

/** The public key of a base64 private key (what `wg pubkey` prints). */
export function publicKeyFromPrivate(privateKey: string): string {
  const raw = decodeWireguardKey(privateKey, 'private key');
  const key = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, raw]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  if (spki.length !== SPKI_X25519_PREFIX.length + WIREGUARD_KEY_BYTES) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_KEY_INVALID',
      'derive WireGuard public key: unexpected SPKI size',
    );
  }
  return encodeWireguardKey(spki.subarray(SPKI_X25519_PREFIX.length));
}

/**
 * The node's static WireGuard key held for key agreement: proves possession of the private key to
 * a peer that knows our public key (the handshake's WireGuard binding). The private key stays in
 * this object (a KeyObject); nothing exports it.
 */
export interface WireguardKeyAgreement {
  /** Base64 public key (what `wg pubkey` prints). */
  readonly publicKey: string;
  /**
   * X25519(our private key, the peer's public key) (RFC 7748 §6.1): 32 bytes that only the holders
   * of the two private keys can compute. Throws MESHAUTH_ERR_WIREGUARD_KEY_INVALID on a malformed
   * peer key or a low-order peer key (all-zero result).
   */
  sharedSecret(peerPublicKey: string): Buffer;
}

/** Key agreement over a base64 WireGuard private key (e.g. from readKeyFile()). */
export function wireguardKeyAgreement(privateKey: string): WireguardKeyAgreement {
  const raw = decodeWireguardKey(privateKey, 'private key');
  const key: KeyObject = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, raw]),
    format: 'der',
    type: 'pkcs8',
  });
  raw.fill(0);
  const publicKey = encodeWireguardKey(
    createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(SPKI_X25519_PREFIX.length),
  );
  return {
    publicKey,
    sharedSecret(peerPublicKey: string): Buffer {
      const peer = createPublicKey({
        key: Buffer.concat([SPKI_X25519_PREFIX, decodeWireguardKey(peerPublicKey, 'peer public key')]),
        format: 'der',
        type: 'spki',
      });
      let secret: Buffer;
      try {
        secret = diffieHellman({ privateKey: key, publicKey: peer });
      } catch (err) {
        throw new WireguardError(
          'MESHAUTH_ERR_WIREGUARD_KEY_INVALID',
          `X25519 with peer key ${peerPublicKey}: ${(err as Error).message}`,
        );
      }
      // RFC 7748 §6.1: a low-order peer point yields all zeros; such a "secret" proves nothing.
      if (secret.every((b) => b === 0)) {
        throw new WireguardError(
          'MESHAUTH_ERR_WIREGUARD_KEY_INVALID',
          `X25519 with peer key ${peerPublicKey}: low-order point (all-zero shared secret)`,
        );
      }
      return secret;
    },
  };
}

/** The node's key pair as meshauth uses it: the private half stays in its file. */
export interface NodeKey {
  /** Path of the 0600 file holding the base64 private key (passed to `wg set ... private-key`). */
  readonly privateKeyFile: string;
  readonly publicKey: string;
  /** True when this call generated the key (first start on this node). */
  readonly created: boolean;
}

/** `<stateDir>/wireguard/public.key`: the public half, for publishing into the inventory. */
export function publicKeyPath(stateDir: string): string {
  return join(stateDir, 'wireguard', 'public.key');
}

/** `<stateDir>/wireguard/private.key` */
export function privateKeyPath(stateDir: string): string {
  return join(stateDir, 'wireguard', 'private.key');
}

/**
 * Loads the node's private key from `<stateDir>/wireguard/private.key` (or `opts.privateKeyFile`),
 * generating it (mode 0600, directory 0700 when created) on first use, and keeps
 * `<stateDir>/wireguard/public.key` equal to its public half. Refuses a file that is not a regular
 * file, is readable or writable by group or others, is owned by another user, or does not hold
 * exactly one valid key.
 */
export function loadOrCreateNodeKey(stateDir: string, opts: { privateKeyFile?: string } = {}): NodeKey {
  const file = opts.privateKeyFile ?? privateKeyPath(stateDir);
  makeDirsSync(join(stateDir, 'wireguard'), 0o700);
  makeDirsSync(dirname(file), 0o700);
  let created = false;
  if (!exists(file)) {
    created = writeNewKeyFile(file, generatePrivateKey());
  }
  const publicKey = publicKeyFromPrivate(readKeyFile(file));
  writePublicKeyFile(publicKeyPath(stateDir), publicKey);
  return { privateKeyFile: file, publicKey, created };
}

/** Reads and checks a private key file (see loadOrCreateNodeKey); returns the base64 key. */
export function readKeyFile(file: string): string {
  const st = lstatSync(file);
  if (!st.isFile()) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_KEY_FILE_MODE',
      `load WireGuard private key ${file}: not a regular file`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_KEY_FILE_MODE',
      `load WireGuard private key ${file}: mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} is too open; ` +
        'it must not be accessible by group or others (chmod 600)',
    );
  }
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_KEY_FILE_MODE',
      `load WireGuard private key ${file}: owned by uid ${st.uid}, expected ${uid}`,
    );
  }
  const text = readFileSync(file, 'utf8').trim();
  if (!isWireguardKey(text)) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_KEY_INVALID',
      `load WireGuard private key ${file}: content is not one base64 WireGuard key`,
    );
  }
  return text;
}

/** Keeps `public.key` (0644) equal to the derived public key; rewritten atomically when it differs. */
function writePublicKeyFile(file: string, publicKey: string): void {
  try {
    if (readFileSync(file, 'utf8') === `${publicKey}\n`) return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${publicKey}\n`, { mode: 0o644 });
  renameSync(tmp, file);
}

function exists(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Creates the file exclusively with mode 0600; false when another process created it first. */
function writeNewKeyFile(file: string, privateKey: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, `${privateKey}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return true;
}
