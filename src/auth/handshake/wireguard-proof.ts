/**
 * The WireGuard binding of the handshake: each side proves, inside the TLS channel, that it holds
 * the WireGuard private key whose public half the inventory lists for its node.
 *
 *   ekm   = TLS-Exporter("EXPORTER-meshauth-wireguard-binding", "", 32)      RFC 8446 §7.5, RFC 5705
 *   ss    = X25519(own WireGuard private key, peer's WireGuard public key)   RFC 7748 §6.1
 *   proof = HMAC-SHA256(key = ss,
 *             "meshauth wireguard binding v1" 0x00 role 0x00 clientNode 0x00 serverNode 0x00
 *             clientPublicKey(32) serverPublicKey(32) ekm(32))                RFC 2104
 *
 * role is "client" for the proof in the hello and "server" for the one in the result, so neither
 * can be reflected. ss is the static-static Diffie-Hellman value of the two node keys: only the
 * holders of the two private keys can compute it, and the exporter ties the proof to this TLS
 * connection (it cannot be replayed on another one). Public keys are the ones the inventory holds
 * for the two nodes, never the ones a peer claims.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { WireguardKeyAgreement } from '../../wireguard/index.js';
import { decodeWireguardKey } from '../../wireguard/index.js';

/** TLS exporter label (RFC 8446 §7.5; the "EXPORTER-" prefix marks a non-IANA label, RFC 5705 §4). */
export const WIREGUARD_BINDING_LABEL = 'EXPORTER-meshauth-wireguard-binding';
/** Bytes of exported keying material, and of a proof (HMAC-SHA256 output). */
export const WIREGUARD_BINDING_BYTES = 32;

const DOMAIN = Buffer.from('meshauth wireguard binding v1', 'ascii');
const ZERO = Buffer.from([0]);

export type WireguardBindingRole = 'client' | 'server';

export interface WireguardBindingInput {
  role: WireguardBindingRole;
  /** TLS exported keying material of this connection (WIREGUARD_BINDING_BYTES). */
  ekm: Buffer;
  clientNode: string;
  serverNode: string;
  /** Base64 WireGuard public keys of the two nodes, as the inventory holds them. */
  clientPublicKey: string;
  serverPublicKey: string;
}

/** Something that can export keying material from an established TLS 1.3 connection. */
export interface KeyingMaterialExporter {
  exportKeyingMaterial(length: number, label: string, context?: Buffer): Buffer;
}

/** The connection's exported keying material for the binding. */
export function bindingKeyingMaterial(tls: KeyingMaterialExporter): Buffer {
  const ekm = tls.exportKeyingMaterial(WIREGUARD_BINDING_BYTES, WIREGUARD_BINDING_LABEL);
  if (ekm.length !== WIREGUARD_BINDING_BYTES) {
    throw new Error(`export keying material: got ${ekm.length} bytes, want ${WIREGUARD_BINDING_BYTES}`);
  }
  return ekm;
}

function macInput(i: WireguardBindingInput): Buffer {
  return Buffer.concat([
    DOMAIN,
    ZERO,
    Buffer.from(i.role, 'ascii'),
    ZERO,
    Buffer.from(i.clientNode, 'utf8'),
    ZERO,
    Buffer.from(i.serverNode, 'utf8'),
    ZERO,
    decodeWireguardKey(i.clientPublicKey, 'client public key'),
    decodeWireguardKey(i.serverPublicKey, 'server public key'),
    i.ekm,
  ]);
}

/** Our proof for `role` (base64 of 32 bytes). `peerPublicKey` is the inventory's key of the peer node. */
export function wireguardProof(
  key: WireguardKeyAgreement,
  peerPublicKey: string,
  input: WireguardBindingInput,
): string {
  const ss = key.sharedSecret(peerPublicKey);
  try {
    return createHmac('sha256', ss).update(macInput(input)).digest('base64');
  } finally {
    ss.fill(0);
  }
}

/**
 * True when `proof` is the peer's proof for `input.role`: computed with our private key and the
 * peer's public key from the inventory. Constant-time comparison; a malformed proof is false.
 */
export function verifyWireguardProof(
  key: WireguardKeyAgreement,
  peerPublicKey: string,
  input: WireguardBindingInput,
  proof: string | undefined,
): boolean {
  if (proof === undefined) return false;
  const got = Buffer.from(proof, 'base64');
  if (got.length !== WIREGUARD_BINDING_BYTES || got.toString('base64') !== proof) return false;
  const want = Buffer.from(wireguardProof(key, peerPublicKey, input), 'base64');
  return timingSafeEqual(got, want);
}
