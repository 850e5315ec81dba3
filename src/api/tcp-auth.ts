import * as grpc from '@grpc/grpc-js';
import type { SecureServerOptions } from 'node:http2';
import type { SecureContextOptions } from 'node:tls';
import type { EventEmitter } from 'node:events';

/** Trust bundles: trust domain → CA certificates (DER). */
export type BundleMap = Map<string, Buffer[]>;

/** SPIFFE X509-SVID verification (src/spiffe verifyX509Svid): throws with `.reason` when invalid. */
export type SvidVerifier = (
  chainDer: readonly Buffer[],
  bundles: BundleMap,
) => { spiffeId: { toString(): string } };

/** The part of a server call that carries the TLS peer. */
export interface PeerCall {
  getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } | undefined };
}

/** What the TCP listener presents and trusts: the daemon's X509-SVID and the CA certificates of every trust bundle. */
export interface TlsMaterial {
  certChainPem: Buffer | string;
  keyPem: Buffer | string;
  /** CA certificates (PEM) client chains must lead to. */
  caPem: Buffer | string;
}

function contextOf(m: TlsMaterial): SecureContextOptions {
  return { cert: m.certChainPem, key: m.keyPem, ca: m.caPem };
}

/**
 * Server credentials for the TCP listener: TLS 1.3 only, a client certificate is requested and TLS
 * checks it against the trust bundles (and proof of key possession). The handshake does not fail
 * for a missing or untrusted certificate: every call then checks the certificate with SPIFFE
 * X509-SVID rules and the allow-list (see authorizeCall), so a refused client learns why through a
 * PERMISSION_DENIED status rather than a bare handshake failure. update() swaps certificate, key
 * and CAs for new connections (SVID rotation, bundle updates).
 */
export class SpiffeServerCredentials extends grpc.ServerCredentials {
  constructor(material: TlsMaterial) {
    const serverOptions: SecureServerOptions = {
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
    };
    super(serverOptions, contextOf(material));
  }

  update(material: TlsMaterial): void {
    this.updateSecureContextOptions(contextOf(material));
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/** On refusal, spiffeId is the client's when its certificate verified (it is only not on the list). */
export type CallAuthorization =
  { ok: true; spiffeId: string } | { ok: false; message: string; spiffeId?: string };

/** Check the client certificate of a call: a valid X509-SVID whose SPIFFE ID is on the allow-list. */
export function authorizeCall(
  call: PeerCall,
  verify: SvidVerifier,
  bundles: BundleMap,
  allow: ReadonlySet<string>,
): CallAuthorization {
  // grpc-js only exposes a peer certificate that TLS verified against the configured CAs.
  const cert = call.getAuthContext().sslPeerCertificate;
  if (!cert?.raw) {
    return { ok: false, message: 'api: no client certificate that chains to a trust bundle was presented' };
  }
  let spiffeId: string;
  try {
    spiffeId = verify([cert.raw], bundles).spiffeId.toString();
  } catch (err) {
    const reason = (err as { reason?: string }).reason ?? (err as Error).message;
    return { ok: false, message: `api: client certificate rejected: ${reason}` };
  }
  if (!allow.has(spiffeId))
    return { ok: false, message: `api: client ${spiffeId} is not on the allow-list`, spiffeId };
  return { ok: true, spiffeId };
}

type AnyHandler = (call: never, callback?: never) => unknown;

/** SPIFFE IDs of calls guardHandlers let through, for handlers that act on who called. */
const authorizedPeers = new WeakMap<object, string>();

/** The SPIFFE ID the TCP listener authenticated for this call; undefined on the Unix socket. */
export function peerSpiffeIdOf(call: object): string | undefined {
  return authorizedPeers.get(call);
}

/**
 * Wrap every handler of a service so calls from unauthorized clients get PERMISSION_DENIED. `check`
 * gets the method name (e.g. "SubmitHead") for allow-lists that differ per method.
 */
export function guardHandlers(
  handlers: grpc.UntypedServiceImplementation,
  check: (call: PeerCall, method: string) => CallAuthorization,
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, h] of Object.entries(handlers)) {
    if (typeof h !== 'function') continue;
    const fn = h as unknown as AnyHandler;
    out[name] = ((call: PeerCall & EventEmitter, cb?: grpc.sendUnaryData<unknown>) => {
      const auth = check(call, name);
      if (!auth.ok) {
        const err = { code: grpc.status.PERMISSION_DENIED, details: auth.message };
        if (cb) cb(err);
        else call.emit('error', err);
        return;
      }
      authorizedPeers.set(call, auth.spiffeId);
      return (fn as (c: unknown, cb?: unknown) => unknown)(call, cb);
    }) as unknown as grpc.UntypedHandleCall;
  }
  return out;
}
