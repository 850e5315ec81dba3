import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { Svid } from '../spiffe/index.js';
import { disableSessionTickets } from './session-tickets.js';

/** The only protocol version meshauth speaks. */
export const MESHAUTH_TLS_VERSION = 'TLSv1.3';

/** ALPN protocol id of the handshake protocol, version 1. */
export const MESHAUTH_ALPN = 'meshauth/1';

/** What a secure context needs from an SVID. */
export type TlsCredentials = Pick<Svid, 'chainPem' | 'keyPem'>;

/**
 * Options shared by every meshauth secure context: TLS 1.3 only, and an EMPTY trust store.
 *
 * The empty store is deliberate: node:tls would otherwise load the public web roots, and those
 * would also be consulted when node assembles the peer's chain. Peer certificates are not judged
 * by OpenSSL at all (`rejectUnauthorized: false` on the sockets); they are verified afterwards,
 * against the SPIFFE trust bundle of the peer's trust domain, by src/spiffe.
 * No context issues TLS session tickets (src/tls/session-tickets.ts).
 */
function baseOptions(): SecureContextOptions {
  // Before any context exists: OpenSSL applies it to contexts created afterwards.
  disableSessionTickets();
  return {
    minVersion: MESHAUTH_TLS_VERSION,
    maxVersion: MESHAUTH_TLS_VERSION,
    ca: [],
  };
}

/** A secure context presenting `creds` (chain leaf first, PKCS#8 key). */
export function secureContextFor(creds: TlsCredentials): SecureContext {
  return createSecureContext({ ...baseOptions(), cert: creds.chainPem, key: creds.keyPem });
}

/**
 * The server's context before SNI selects an identity: it holds no certificate, so a client that
 * sends no (or an unknown) server name cannot complete a handshake.
 */
export function anonymousSecureContext(): SecureContext {
  return createSecureContext(baseOptions());
}

/**
 * Secure contexts per SVID object. An SVID renewal produces a new object and so a new context;
 * old ones are released with their SVID.
 */
export class SecureContextCache {
  private contexts = new WeakMap<TlsCredentials, SecureContext>();

  get(creds: TlsCredentials): SecureContext {
    let ctx = this.contexts.get(creds);
    if (!ctx) {
      ctx = secureContextFor(creds);
      this.contexts.set(creds, ctx);
    }
    return ctx;
  }

  clear(): void {
    this.contexts = new WeakMap();
  }
}
