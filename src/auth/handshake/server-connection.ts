import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Svid, X509SvidVerifier } from '../../spiffe/index.js';
import {
  MESHAUTH_ALPN,
  MESHAUTH_TLS_VERSION,
  peerChainDer,
  sendPlaintextAlert,
  TLS_ALERT,
} from '../../tls/index.js';
import type { ResponderPair } from '../audit-pacing.js';
import type { EntryTrust } from '../trust.js';
import type { WireguardKeyAgreement } from '../../wireguard/index.js';
import { reliedOnTrust } from './relied-on.js';
import {
  HandshakeError,
  isHandshakeReason,
  messageOf,
  protocolError,
  type HandshakeReason,
} from './errors.js';
import { computeEntryExpiry } from './expiry.js';
import { encodeFrame, FrameDecoder } from './frame.js';
import { failedResult, okResult, parseHello, type HelloMessage } from './protocol.js';
import type { HandshakeFailureEvent, HandshakeIdentity, HandshakeStage, ServerAuthResult } from './types.js';
import { verifyPeerChain, type VerifiedPeer } from './verify-peer.js';
import { bindingKeyingMaterial, verifyWireguardProof, wireguardProof } from './wireguard-proof.js';

/** How long a connection may linger after its result was written, waiting for the client to close. */
const LINGER_MS = 1000;

export interface SelectedIdentity {
  spiffeId: string;
  svid: Svid;
  context: SecureContext;
}

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly identity: HandshakeIdentity;
  readonly nodeName: string;
  readonly anonymousContext: SecureContext;
  readonly handshakeTimeoutMs: number;
  readonly maxFrameBytes: number;
  readonly maxEntryTtlMs: number;
  readonly logger: Logger;
  /** Verifies client chains (with its cache of chains already verified). */
  readonly verifier: X509SvidVerifier;
  now(): number;
  /**
   * Map a server name to the identity it asks for; throws (or rejects with) HandshakeError when
   * there is none. A promise when the identity is a local workload whose SVID is still awaited.
   */
  selectIdentity(serverName: string): SelectedIdentity | Promise<SelectedIdentity>;
  nodeForAddress(remoteAddress: string): string | undefined;
  isWorkloadOnNode(spiffeId: string, node: string): boolean;
  /** This node's WireGuard key (public half sent, private half proves possession), if any. */
  wireguard(): WireguardKeyAgreement | undefined;
  expectedPeerWireguardKey(node: string): string | undefined;
  /**
   * Whether the entry may be written now as far as this node's audit queue is concerned
   * (ResponderAuditPacer.admit): undefined = at once; a promise = after the queue drained; rejects
   * with audit-busy (or aborted) = not at all.
   */
  paceEntry(pair: ResponderPair, budgetMs: number, signal: AbortSignal): Promise<void> | undefined;
  onAuthenticated(r: ServerAuthResult): void | Promise<void>;
  failed(f: HandshakeFailureEvent): void;
  succeeded(r: ServerAuthResult): void;
  released(c: ServerConnection): void;
}

/**
 * One accepted TCP connection: TLS 1.3 with SNI-selected identity, client chain verification,
 * one hello frame in, one result frame out. Every path ends in exactly one `failed` or
 * `succeeded` report and in the socket being destroyed; nothing thrown escapes an event handler.
 */
export class ServerConnection {
  private readonly tls: TLSSocket;
  private readonly startedMs: number;
  private readonly peer: string;
  private readonly peerAddress: string;
  private readonly decoder: FrameDecoder;
  private stage: HandshakeStage = 'tls';
  private settled = false;
  private timer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private requested: SelectedIdentity | undefined;
  private verified: VerifiedPeer | undefined;
  private reliedOn: { trust: EntryTrust; anchorsDer: Buffer[] } | undefined;
  private hello: HelloMessage | undefined;
  /** Ends a wait for the audit queue when the connection ends first. */
  private readonly ended = new AbortController();

  constructor(
    private readonly raw: Socket,
    private readonly host: ConnectionHost,
  ) {
    this.startedMs = host.now();
    this.peerAddress = raw.remoteAddress ?? 'unknown';
    this.peer = `${this.peerAddress}:${raw.remotePort ?? 0}`;
    this.decoder = new FrameDecoder(host.maxFrameBytes);
    raw.on('error', () => {
      // Reported through the TLS socket (or its close); a raw socket error must never be unhandled.
    });
    raw.setNoDelay(true);
    raw.once('close', () => this.onRawClose());
    this.timer = setTimeout(
      () =>
        this.fail(
          new HandshakeError(
            'timeout',
            `accept handshake: not completed within ${host.handshakeTimeoutMs} ms`,
          ),
        ),
      host.handshakeTimeoutMs,
    );
    this.tls = new TLSSocket(raw, {
      isServer: true,
      secureContext: host.anonymousContext,
      requestCert: true,
      // The chain is verified against the SPIFFE bundle after the TLS handshake (verifyPeerChain).
      rejectUnauthorized: false,
      ALPNProtocols: [MESHAUTH_ALPN],
      SNICallback: (name, cb) => this.onServerName(name, cb),
    });
    this.tls.on('error', (err: Error) => this.onTlsError(err));
    this.tls.once('secure', () => this.guard(() => this.onSecure()));
    this.tls.on('close', () => {
      if (!this.settled && this.stage !== 'entry') {
        this.fail(protocolError(`accept handshake: connection closed by the peer during ${this.stage}`));
      }
    });
  }

  /** Close immediately (server shutdown). */
  destroy(): void {
    if (!this.settled) this.fail(new HandshakeError('aborted', 'accept handshake: server closing'));
    this.tls.destroy();
    this.raw.destroy();
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.fail(asHandshakeError(err, 'internal-error'));
    }
  }

  private onServerName(name: string, cb: (err: Error | null, ctx?: SecureContext) => void): void {
    const refuse = (err: unknown): void => {
      const e = asHandshakeError(err, 'internal-error');
      if (e.reason === 'remote-identity-unavailable' && !this.settled)
        sendPlaintextAlert(this.raw, TLS_ALERT.unrecognizedName);
      this.fail(e);
      cb(e);
    };
    const accept = (selected: SelectedIdentity): void => {
      if (this.settled) return; // timed out or closed while the SVID was awaited
      this.requested = selected;
      cb(null, selected.context);
    };
    let selected: SelectedIdentity | Promise<SelectedIdentity>;
    try {
      selected = this.host.selectIdentity(name);
    } catch (err) {
      refuse(err);
      return;
    }
    if (selected instanceof Promise) selected.then(accept, refuse);
    else accept(selected);
  }

  private onTlsError(err: Error): void {
    if (this.settled) return;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const firstLine = err.message.split('\n')[0] ?? err.message;
    let reason: HandshakeReason = 'protocol-error';
    if (code === 'ERR_SSL_UNSUPPORTED_PROTOCOL' || code === 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION')
      reason = 'tls-version';
    this.fail(
      new HandshakeError(reason, `accept handshake: TLS: ${firstLine}`, { cause: err, details: { code } }),
    );
  }

  private onSecure(): void {
    if (this.settled) return;
    this.stage = 'verify';
    const version = this.tls.getProtocol();
    if (version !== MESHAUTH_TLS_VERSION) {
      throw new HandshakeError(
        'tls-version',
        `accept handshake: negotiated ${String(version)}, need ${MESHAUTH_TLS_VERSION}`,
      );
    }
    if (this.tls.alpnProtocol !== MESHAUTH_ALPN) {
      throw protocolError(`accept handshake: client did not negotiate ALPN ${MESHAUTH_ALPN}`);
    }
    if (this.tls.isSessionReused()) {
      // A resumed session proves possession of a ticket, not of the certificate's key.
      throw protocolError('accept handshake: session resumption is not accepted');
    }
    if (!this.requested) {
      throw new HandshakeError(
        'remote-identity-unavailable',
        'accept handshake: client sent no meshauth server name',
      );
    }
    const bundles = this.host.identity.bundles();
    this.verified = verifyPeerChain(
      peerChainDer(this.tls),
      bundles,
      undefined,
      new Date(this.host.now()),
      this.host.verifier,
    );
    this.reliedOn = reliedOnTrust(
      this.verified,
      this.requested.svid.chainDer,
      this.requested.spiffeId,
      bundles,
    );
    this.stage = 'hello';
    this.tls.on('data', (chunk: Buffer) => this.guard(() => this.onData(chunk)));
  }

  private onData(chunk: Buffer): void {
    if (this.settled) return;
    if (this.hello) throw protocolError('accept handshake: data after the hello frame');
    const frames = this.decoder.push(chunk);
    if (frames.length === 0) return;
    if (frames.length > 1) throw protocolError('accept handshake: more than one frame');
    this.hello = parseHello(frames[0]);
    this.onHello(this.hello);
  }

  private onHello(hello: HelloMessage): void {
    const requested = this.requested!;
    const verified = this.verified!;
    const host = this.host;
    if (hello.serverId !== requested.spiffeId) {
      throw protocolError(
        `accept handshake: hello asks for ${hello.serverId} but the server name asked for ${requested.spiffeId}`,
      );
    }
    if (hello.clientId !== verified.spiffeId) {
      throw new HandshakeError(
        'spiffe-id-mismatch',
        `accept handshake: hello claims ${hello.clientId} but the client certificate is ${verified.spiffeId}`,
      );
    }
    if (hello.serverNode !== host.nodeName) {
      throw new HandshakeError(
        'node-mismatch',
        `accept handshake: client addressed node ${hello.serverNode}, this is ${host.nodeName}`,
      );
    }
    if (hello.clientNode === host.nodeName) {
      // Pairs on one node never cross the wire: their entries are not written through a handshake.
      throw new HandshakeError(
        'node-mismatch',
        `accept handshake: client claims to be this node (${host.nodeName}); same-node pairs are not authenticated over the network`,
      );
    }
    const sourceNode = callback(() => host.nodeForAddress(this.peerAddress), 'nodeForAddress');
    if (sourceNode !== hello.clientNode) {
      throw new HandshakeError(
        'node-mismatch',
        `accept handshake: client claims node ${hello.clientNode} but ${this.peerAddress} belongs to ${sourceNode ?? 'no known node'}`,
      );
    }
    if (!callback(() => host.isWorkloadOnNode(hello.clientId, hello.clientNode), 'isWorkloadOnNode')) {
      throw new HandshakeError(
        'workload-not-on-node',
        `accept handshake: ${hello.clientId} is not a workload of node ${hello.clientNode}`,
      );
    }
    const expectedKey = callback(
      () => host.expectedPeerWireguardKey(hello.clientNode),
      'expectedPeerWireguardKey',
    );
    if (expectedKey !== undefined && hello.wgPublicKey !== expectedKey) {
      throw new HandshakeError(
        'wireguard-key-mismatch',
        `accept handshake: node ${hello.clientNode} presented WireGuard key ${hello.wgPublicKey ?? '(none)'}, inventory has ${expectedKey}`,
      );
    }
    const own = callback(() => host.wireguard(), 'wireguard');
    let serverProof: string | undefined;
    if (expectedKey !== undefined) {
      // The client must prove it holds the private half of the key the inventory lists for its node.
      if (!own) {
        throw new HandshakeError(
          'wireguard-key-proof-invalid',
          `accept handshake: node ${hello.clientNode} has WireGuard key ${expectedKey} but this node holds none to verify its proof`,
        );
      }
      const binding = {
        ekm: bindingKeyingMaterial(this.tls),
        clientNode: hello.clientNode,
        serverNode: host.nodeName,
        clientPublicKey: expectedKey,
        serverPublicKey: own.publicKey,
      };
      if (!verifyWireguardProof(own, expectedKey, { role: 'client', ...binding }, hello.wgProof)) {
        throw new HandshakeError(
          'wireguard-key-proof-invalid',
          `accept handshake: node ${hello.clientNode} did not prove possession of the WireGuard key ${expectedKey}`,
        );
      }
      serverProof = wireguardProof(own, expectedKey, { role: 'server', ...binding });
    }
    const nowMs = host.now();
    const expiry = computeEntryExpiry({
      // Every certificate the decision relied on: both chains and the authorities anchoring them.
      chains: [verified.chainDer, requested.svid.chainDer, this.reliedOn!.anchorsDer],
      nowMs,
      maxEntryTtlMs: host.maxEntryTtlMs,
    });
    if (expiry.expiresAtMs <= nowMs) {
      throw new HandshakeError(
        'svid-expired',
        'accept handshake: a presented certificate has already expired',
      );
    }
    const cipher = this.tls.getCipher();
    const result: ServerAuthResult = {
      localId: requested.spiffeId,
      remoteId: verified.spiffeId,
      peerNode: hello.clientNode,
      peerAddress: this.peerAddress,
      expiresAtMs: expiry.expiresAtMs,
      trust: this.reliedOn!.trust,
      durationMs: nowMs - this.startedMs,
      localSerial: requested.svid.leaf.serialNumber,
      peerSerials: verified.serials,
      peerNotAfterMs: verified.notAfterMs,
      tlsVersion: this.tls.getProtocol() ?? MESHAUTH_TLS_VERSION,
      cipher: cipher.standardName ?? cipher.name,
    };
    this.stage = 'entry';
    void this.writeEntry(result, { publicKey: own?.publicKey, proof: serverProof, expectedKey });
  }

  /**
   * After a wait for the audit queue (up to most of the handshake deadline), what the inventory said
   * of the client when its hello was checked may have changed: its address may belong to another
   * node now, its workload may have left that node, its node's WireGuard key may have been replaced.
   * The entry is written only if all of it still holds (fail closed, as in onHello).
   */
  private recheckPeerAfterWait(result: ServerAuthResult, expectedKey: string | undefined): void {
    const host = this.host;
    const sourceNode = callback(() => host.nodeForAddress(this.peerAddress), 'nodeForAddress');
    if (sourceNode !== result.peerNode) {
      throw new HandshakeError(
        'node-mismatch',
        `accept handshake: ${this.peerAddress} belongs to ${sourceNode ?? 'no known node'} now, not ${result.peerNode} (changed while the entry waited for the audit queue)`,
      );
    }
    if (!callback(() => host.isWorkloadOnNode(result.remoteId, result.peerNode), 'isWorkloadOnNode')) {
      throw new HandshakeError(
        'workload-not-on-node',
        `accept handshake: ${result.remoteId} is no longer a workload of node ${result.peerNode} (changed while the entry waited for the audit queue)`,
      );
    }
    const key = callback(() => host.expectedPeerWireguardKey(result.peerNode), 'expectedPeerWireguardKey');
    if (key !== expectedKey) {
      throw new HandshakeError(
        'wireguard-key-mismatch',
        `accept handshake: node ${result.peerNode} has WireGuard key ${key ?? '(none)'} now, the client proved ${expectedKey ?? '(none)'} (changed while the entry waited for the audit queue)`,
      );
    }
  }

  private async writeEntry(
    result: ServerAuthResult,
    wg: { publicKey: string | undefined; proof: string | undefined; expectedKey: string | undefined },
  ): Promise<void> {
    try {
      // This node's audit queue first: a peer's pair waits while it is above its high-water mark,
      // until the deadline less a tenth of the handshake budget (to send the refusal before the
      // client's own timeout, which started earlier). Trust is re-checked after the wait.
      const budgetMs = this.startedMs + this.host.handshakeTimeoutMs * 0.9 - this.host.now();
      const paced = this.host.paceEntry(
        { path: 'handshake', peerNode: result.peerNode, localId: result.localId, remoteId: result.remoteId },
        budgetMs,
        this.ended.signal,
      );
      if (paced) await paced;
      if (this.settled) return; // timed out or shut down while waiting: nothing written
      if (paced && result.expiresAtMs <= this.host.now()) {
        throw new HandshakeError(
          'svid-expired',
          'accept handshake: a presented certificate expired while the entry waited for the audit queue',
        );
      }
      if (paced) this.recheckPeerAfterWait(result, wg.expectedKey);
      // Trust is re-checked at the moment of the write: our SVID may have gone while the client spoke.
      if (!this.host.identity.svid(result.localId)) {
        throw new HandshakeError(
          'svid-removed',
          `accept handshake: write entry: no SVID held for ${result.localId} any more`,
        );
      }
      await this.host.onAuthenticated(result);
    } catch (err) {
      // A refusal with its own reason (svid-removed, workload-moved, bundle-revoked, ...) keeps it.
      const reason = (err as { reason?: unknown }).reason;
      this.fail(
        new HandshakeError(
          typeof reason === 'string' && isHandshakeReason(reason) ? reason : 'entry-write-failed',
          `accept handshake: write entry: ${messageOf(err)}`,
          { cause: err },
        ),
      );
      return;
    }
    if (this.settled) {
      // Timed out or shut down while the entry was written: the entry stands (the client was verified).
      this.host.logger.warn(
        {
          event: 'handshake_entry_after_close',
          peer: this.peer,
          local_id: result.localId,
          remote_id: result.remoteId,
        },
        'accept handshake: entry written after the connection ended',
      );
      return;
    }
    this.settled = true;
    this.clearTimer();
    this.host.succeeded({ ...result, durationMs: this.host.now() - this.startedMs });
    this.send(encodeFrame(okResult(result.expiresAtMs, wg.publicKey, wg.proof), this.host.maxFrameBytes));
  }

  private send(frame: Buffer): void {
    if (!this.tls.destroyed && this.tls.writable) {
      this.tls.end(frame);
      this.lingerTimer = setTimeout(() => this.tls.destroy(), LINGER_MS);
      this.lingerTimer.unref();
    } else {
      this.tls.destroy();
    }
  }

  private fail(err: HandshakeError): void {
    if (this.settled) return;
    this.settled = true;
    this.clearTimer();
    this.ended.abort();
    this.host.failed({
      reason: err.reason,
      message: err.message,
      peer: this.peer,
      peerAddress: this.peerAddress,
      stage: this.stage,
      durationMs: this.host.now() - this.startedMs,
      ...(this.requested ? { localId: this.requested.spiffeId } : {}),
      ...(this.verified ? { remoteId: this.verified.spiffeId } : {}),
      ...(this.hello ? { peerNode: this.hello.clientNode } : {}),
    });
    // Inside TLS the client learns why; before that there is nobody to tell.
    if (
      this.verified !== undefined ||
      this.stage === 'verify' ||
      this.stage === 'hello' ||
      this.stage === 'entry'
    ) {
      if (!this.tls.destroyed && this.tls.writable && err.reason !== 'aborted') {
        let ownKey: string | undefined;
        try {
          ownKey = this.host.wireguard()?.publicKey;
        } catch {
          ownKey = undefined;
        }
        this.send(encodeFrame(failedResult(err.reason, ownKey), this.host.maxFrameBytes));
        return;
      }
    }
    this.tls.destroy();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onRawClose(): void {
    this.clearTimer();
    // A pair still waiting for the audit queue is dropped (aborted): the client has gone.
    this.ended.abort();
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    if (!this.settled && this.stage !== 'entry') {
      this.fail(protocolError(`accept handshake: connection closed by the peer during ${this.stage}`));
    }
    this.host.released(this);
  }
}

function callback<T>(fn: () => T, name: string): T {
  try {
    return fn();
  } catch (err) {
    throw new HandshakeError('internal-error', `accept handshake: ${name}: ${messageOf(err)}`, {
      cause: err,
    });
  }
}

function asHandshakeError(err: unknown, fallback: HandshakeReason): HandshakeError {
  if (err instanceof HandshakeError) return err;
  return new HandshakeError(fallback, `accept handshake: ${messageOf(err)}`, { cause: err });
}
