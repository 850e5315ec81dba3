import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  verifyWireguardProof,
  wireguardProof,
  type WireguardBindingInput,
} from '../../../../src/auth/handshake/wireguard-proof.js';
import { generatePrivateKey, wireguardKeyAgreement } from '../../../../src/wireguard/keys.js';

const a = wireguardKeyAgreement(generatePrivateKey());
const b = wireguardKeyAgreement(generatePrivateKey());
const x = wireguardKeyAgreement(generatePrivateKey());

function input(over: Partial<WireguardBindingInput> = {}): WireguardBindingInput {
  return {
    role: 'client',
    ekm: Buffer.alloc(32, 9),
    clientNode: 'node-a',
    serverNode: 'node-b',
    clientPublicKey: a.publicKey,
    serverPublicKey: b.publicKey,
    ...over,
  };
}

describe('WireGuard binding proof', () => {
  it('the X25519 static-static secret is the same from both ends and differs for any other key', () => {
    expect(a.sharedSecret(b.publicKey).equals(b.sharedSecret(a.publicKey))).toBe(true);
    expect(x.sharedSecret(b.publicKey).equals(a.sharedSecret(b.publicKey))).toBe(false);
  });

  it('the peer verifies an honest proof; it is 32 bytes of base64', () => {
    const proof = wireguardProof(a, b.publicKey, input());
    expect(Buffer.from(proof, 'base64')).toHaveLength(32);
    expect(verifyWireguardProof(b, a.publicKey, input(), proof)).toBe(true);
  });

  it('a holder of another private key cannot prove a public key it only knows', () => {
    const forged = wireguardProof(x, b.publicKey, input());
    expect(verifyWireguardProof(b, a.publicKey, input(), forged)).toBe(false);
  });

  it('is bound to the connection (exporter), the role, the nodes and the keys', () => {
    const proof = wireguardProof(a, b.publicKey, input());
    const variants: Partial<WireguardBindingInput>[] = [
      { ekm: randomBytes(32) },
      { role: 'server' },
      { clientNode: 'node-c' },
      { serverNode: 'node-c' },
      { clientPublicKey: x.publicKey },
      { serverPublicKey: x.publicKey },
    ];
    for (const v of variants) expect(verifyWireguardProof(b, a.publicKey, input(v), proof)).toBe(false);
  });

  it('refuses malformed proofs without throwing', () => {
    for (const bad of [undefined, '', 'abc=', Buffer.alloc(31).toString('base64'), '!'.repeat(44)]) {
      expect(verifyWireguardProof(b, a.publicKey, input(), bad)).toBe(false);
    }
  });

  it('refuses a low-order peer key (all-zero shared secret) with a clear error', () => {
    const zero = Buffer.alloc(32).toString('base64');
    expect(() => a.sharedSecret(zero)).toThrow(/low-order|X25519/);
  });
});
