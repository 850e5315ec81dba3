import { connect, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { silentLogger } from '../../log.js';
import { systemClock } from '../../time.js';
import {
  MESHAUTH_ALPN,
  MESHAUTH_TLS_VERSION,
  peerChainDer,
  SecureContextCache,
  sniForSpiffeId,
  TLS_ALERT,
  tlsAlertOf,
} from '../../tls/index.js';
import { X509SvidVerifier } from '../../spiffe/index.js';
import { HandshakeError, messageOf, protocolError, type HandshakeReason } from './errors.js';
import type { EntryTrust } from '../trust.js';
import type { WireguardKeyAgreement } from '../../wireguard/index.js';
import { computeEntryExpiry } from './expiry.js';
import { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from './frame.js';
import { helloMessage, parseResult } from './protocol.js';
import { clientOutcomeChannel } from './stats.js';
import type { AuthenticateRequest, HandshakeIdentity, HandshakeResult } from './types.js';
import { reliedOnTrust } from './relied-on.js';
import { verifyPeerChain, type VerifiedPeer } from './verify-peer.js';
import { bindingKeyingMaterial, verifyWireguardProof, wireguardProof } from './wireguard-proof.js';

export interface HandshakeClientOptions {
  identity: HandshakeIdentity;
  /** This node's name (sent in the hello; the server checks it against our address). */
  nodeName: string;
  /**
   * This node's WireGuard key: its public half is sent in the hello, and the private half proves
   * possession to the server (wireguard-proof.ts).
   */
  wireguard?: WireguardKeyAgreement;
  /**
   * The key the inventory holds for a node; when it returns one, the server's result must carry it
   * and prove possession of its private half.
   */
  expectedPeerWireguardKey?: (node: string) => string | undefined;
  /** Cap on an entry's lifetime. */
  maxEntryTtlMs: number;
  /** Budget for TCP connect + TLS + hello + result. */
  timeoutMs: number;
  /**
   * Verifies the servers' chains, remembering chains already verified under the same bundle
   * (src/spiffe/verify-cache.ts). Default: a verifier of this client's own.
   */
  verifier?: X509SvidVerifier;
  now?: () => number;
  logger?: Logger;
}

/** What to authenticate: the pair, and the peer daemon to dial. */
export type AuthenticateParams = AuthenticateRequest;

/** Lingering after the result before the socket is destroyed regardless of the peer. */
const CLOSE_GRACE_MS = 1000;

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * The client half of the meshauth handshake. `authenticate` resolves only when both sides verified
 * each other and the server wrote its entry; every failure rejects with a HandshakeError whose
 * `reason` is a stable code, and then no entry may be written.
 */
export class HandshakeClient {
  private readonly contexts = new SecureContextCache();
  private readonly verifier: X509SvidVerifier;
  private readonly now: () => number;
  private readonly logger: Logger;

  constructor(private readonly opts: HandshakeClientOptions) {
    if (!(opts.maxEntryTtlMs > 0)) throw new RangeError('handshake client: maxEntryTtlMs must be > 0');
    if (!(opts.timeoutMs > 0)) throw new RangeError('handshake client: timeoutMs must be > 0');
    this.now = opts.now ?? systemClock.now;
    this.verifier = opts.verifier ?? new X509SvidVerifier();
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'handshake-client' });
  }

  authenticate(p: AuthenticateParams): Promise<HandshakeResult> {
    const startedMs = this.now();
    return new Promise<HandshakeResult>((resolve, reject) => {
      let settled = false;
      let socket: TLSSocket | undefined;
      let timer: NodeJS.Timeout | undefined = undefined;
      let tcpConnected = false;
      let secured = false;
      let verified: VerifiedPeer | undefined;
      let reliedOn: { trust: EntryTrust; anchorsDer: Buffer[] } | undefined;
      let ekm: Buffer | undefined;
      const decoder = new FrameDecoder(MAX_FRAME_BYTES);
      const onAbort = (): void =>
        finish(new HandshakeError('aborted', 'authenticate: aborted by the caller'));

      const finish = (err: HandshakeError | undefined, result?: HandshakeResult): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        p.signal?.removeEventListener('abort', onAbort);
        if (socket && !socket.destroyed) {
          if (err) socket.destroy();
          else {
            const s = socket;
            s.end();
            setTimeout(() => s.destroy(), CLOSE_GRACE_MS).unref();
          }
        }
        const durationMs = this.now() - startedMs;
        if (clientOutcomeChannel.hasSubscribers) {
          clientOutcomeChannel.publish({
            ok: !err,
            reason: err?.reason,
            localId: p.localId,
            remoteId: p.remoteId,
            peerNode: p.peerNode,
            durationMs,
          });
        }
        if (err) {
          this.logger.debug(
            {
              event: 'handshake_failed',
              reason: err.reason,
              local_id: p.localId,
              remote_id: p.remoteId,
              node: p.peerNode,
              duration_ms: durationMs,
            },
            err.message,
          );
          reject(err);
        } else resolve({ ...result!, durationMs });
      };
      const guard = (fn: () => void): void => {
        try {
          fn();
        } catch (err) {
          finish(
            err instanceof HandshakeError
              ? err
              : new HandshakeError('internal-error', `authenticate: ${messageOf(err)}`, { cause: err }),
          );
        }
      };

      if (p.signal?.aborted) return onAbort();
      p.signal?.addEventListener('abort', onAbort, { once: true });
      const svid = this.opts.identity.svid(p.localId);
      if (!svid)
        return finish(new HandshakeError('no-local-svid', `authenticate: no SVID held for ${p.localId}`));

      timer = setTimeout(
        () =>
          finish(
            new HandshakeError(
              'timeout',
              `authenticate: no result from ${p.peerAddress}:${p.peerPort} within ${this.opts.timeoutMs} ms`,
            ),
          ),
        this.opts.timeoutMs,
      );

      const onSecure = (s: TLSSocket): void => {
        secured = true;
        const version = s.getProtocol();
        if (version !== MESHAUTH_TLS_VERSION) {
          throw new HandshakeError(
            'tls-version',
            `authenticate: negotiated ${String(version)}, need ${MESHAUTH_TLS_VERSION}`,
          );
        }
        if (s.alpnProtocol !== MESHAUTH_ALPN)
          throw protocolError(`authenticate: server did not negotiate ALPN ${MESHAUTH_ALPN}`);
        const bundles = this.opts.identity.bundles();
        verified = verifyPeerChain(peerChainDer(s), bundles, p.remoteId, new Date(this.now()), this.verifier);
        reliedOn = reliedOnTrust(verified, svid.chainDer, p.localId, bundles);
        const own = this.opts.wireguard;
        const peerKey = this.opts.expectedPeerWireguardKey?.(p.peerNode);
        let wgProof: string | undefined;
        if (own && peerKey !== undefined) {
          ekm = bindingKeyingMaterial(s);
          wgProof = wireguardProof(own, peerKey, {
            role: 'client',
            ekm,
            clientNode: this.opts.nodeName,
            serverNode: p.peerNode,
            clientPublicKey: own.publicKey,
            serverPublicKey: peerKey,
          });
        }
        const hello = helloMessage({
          clientNode: this.opts.nodeName,
          serverNode: p.peerNode,
          clientId: p.localId,
          serverId: p.remoteId,
          wgPublicKey: own?.publicKey,
          wgProof,
        });
        s.write(encodeFrame(hello));
        s.on('data', (chunk: Buffer) => guard(() => onData(s, chunk)));
      };

      const onData = (s: TLSSocket, chunk: Buffer): void => {
        if (settled) return;
        const frames = decoder.push(chunk);
        if (frames.length === 0) return;
        if (frames.length > 1) throw protocolError('authenticate: more than one result frame');
        const r = parseResult(frames[0]);
        const expected = this.opts.expectedPeerWireguardKey?.(p.peerNode);
        if (expected !== undefined && r.wgPublicKey !== expected && (r.ok || r.wgPublicKey !== undefined)) {
          // Checked before the server's verdict: a server whose node key is not the inventory's
          // cannot verify our proof either, and the mismatch is the cause to report.
          throw new HandshakeError(
            'wireguard-key-mismatch',
            `authenticate: node ${p.peerNode} presented WireGuard key ${r.wgPublicKey ?? '(none)'}, inventory has ${expected}`,
            r.ok ? {} : { details: { peerReason: r.reason } },
          );
        }
        if (!r.ok) {
          // audit-busy: the server's audit queue is behind (audit-pacing.ts). Kept as the reason so
          // that it is told apart from a refusal of the pair itself; like every failure it is
          // retried with the manager's backoff, and nothing is written meanwhile.
          throw new HandshakeError(
            r.reason === 'audit-busy' ? 'audit-busy' : 'peer-rejected',
            `authenticate: ${p.peerNode} rejected the handshake: ${r.reason ?? 'unknown'}`,
            {
              details: { peerReason: r.reason },
            },
          );
        }
        if (expected !== undefined) {
          const own = this.opts.wireguard;
          const input = {
            role: 'server' as const,
            ekm: ekm ?? bindingKeyingMaterial(s),
            clientNode: this.opts.nodeName,
            serverNode: p.peerNode,
            clientPublicKey: own?.publicKey ?? '',
            serverPublicKey: expected,
          };
          if (!own || !verifyWireguardProof(own, expected, input, r.wgProof)) {
            throw new HandshakeError(
              'wireguard-key-proof-invalid',
              own
                ? `authenticate: node ${p.peerNode} did not prove possession of the WireGuard key ${expected}`
                : `authenticate: node ${p.peerNode} has WireGuard key ${expected} but this node holds none to verify its proof`,
            );
          }
        }
        const peer = verified!;
        const nowMs = this.now();
        const own = computeEntryExpiry({
          // Every certificate the decision relied on: both chains and the authorities anchoring them.
          chains: [svid.chainDer, peer.chainDer, reliedOn!.anchorsDer],
          nowMs,
          maxEntryTtlMs: this.opts.maxEntryTtlMs,
        });
        // The server computed the same bound a moment earlier; taking the minimum makes both sides agree.
        const expiresAtMs = Math.min(own.expiresAtMs, r.expiresAtMs);
        const cipher = s.getCipher();
        finish(undefined, {
          localId: p.localId,
          remoteId: p.remoteId,
          peerNode: p.peerNode,
          expiresAtMs,
          localSerial: svid.leaf.serialNumber,
          peerSerials: peer.serials,
          peerNotAfterMs: peer.notAfterMs,
          tlsVersion: tlsVersionOf(s),
          cipher: cipher.standardName ?? cipher.name,
          durationMs: 0,
          trust: reliedOn!.trust,
        });
      };

      try {
        socket = connect({
          host: p.peerAddress,
          port: p.peerPort,
          servername: sniForSpiffeId(p.remoteId),
          secureContext: this.contexts.get(svid),
          // The server's chain is verified against the SPIFFE bundle in onSecure (verifyPeerChain).
          rejectUnauthorized: false,
          ALPNProtocols: [MESHAUTH_ALPN],
        });
        socket.setNoDelay(true);
      } catch (err) {
        return finish(
          new HandshakeError('internal-error', `authenticate: connect: ${(err as Error).message}`, {
            cause: err,
          }),
        );
      }
      const s = socket;
      s.once('connect', () => (tcpConnected = true));
      s.once('secureConnect', () => guard(() => onSecure(s)));
      s.on('error', (err: Error) => {
        if (!settled) finish(classifySocketError(err, tcpConnected, secured, p));
      });
      s.on('close', () => {
        // The normal end of every handshake: the result settled it; build no error for nothing.
        if (settled) return;
        if (secured)
          finish(protocolError(`authenticate: ${p.peerNode} closed the connection before sending a result`));
        else
          finish(
            new HandshakeError(
              'peer-unreachable',
              `authenticate: ${p.peerAddress}:${p.peerPort} closed the connection during the TLS handshake`,
            ),
          );
      });
    });
  }
}

function tlsVersionOf(s: TLSSocket): string {
  return s.getProtocol() ?? MESHAUTH_TLS_VERSION;
}

function classifySocketError(
  err: Error,
  tcpConnected: boolean,
  secured: boolean,
  p: AuthenticateParams,
): HandshakeError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const where = `${p.peerAddress}:${p.peerPort}`;
  const firstLine = err.message.split('\n')[0] ?? err.message;
  const alert = tlsAlertOf(err);
  let reason: HandshakeReason;
  let what: string;
  if (alert === TLS_ALERT.unrecognizedName) {
    reason = 'remote-identity-unavailable';
    what = `${p.peerNode} does not hold ${p.remoteId}`;
  } else if (alert === TLS_ALERT.protocolVersion || code === 'ERR_SSL_UNSUPPORTED_PROTOCOL') {
    reason = 'tls-version';
    what = `TLS version refused: ${firstLine}`;
  } else if (!tcpConnected && UNREACHABLE_CODES.has(code)) {
    reason = 'peer-unreachable';
    what = `connect ${where}: ${firstLine}`;
  } else if (!secured && (code === 'ECONNRESET' || code === 'EPIPE')) {
    // The server sheds load (connection limit, per-peer rate limit) by closing before TLS.
    reason = 'peer-unreachable';
    what = `${where} closed the connection during the TLS handshake (${code})`;
  } else {
    reason = 'protocol-error';
    what = `${secured ? '' : 'TLS: '}${firstLine}`;
  }
  return new HandshakeError(reason, `authenticate: ${what}`, { cause: err, details: { code, alert } });
}
