import type { TLSSocket } from 'node:tls';
import type { TrustBundles } from '../../spiffe/index.js';
import { MESHAUTH_TLS_VERSION, peerChainDer } from '../../tls/index.js';
import type { Clock, Timer } from '../../time.js';
import type { WireguardKeyAgreement } from '../../wireguard/index.js';
import { HandshakeError, messageOf, protocolError } from '../handshake/index.js';
import { earliestNotAfterMs } from '../handshake/index.js';
import { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from '../handshake/index.js';
import { verifyPeerChain } from '../handshake/index.js';
import { bindingKeyingMaterial, verifyWireguardProof, wireguardProof } from '../handshake/index.js';
import { chainAnchors, trustDomainOf, type ChainAnchors } from '../trust.js';
import { cipherSuiteHash, type AuthenticatorConnection, type TlsRole } from './exported-authenticator.js';
import {
  CHANNEL_ALPN,
  message,
  parseChannelMessage,
  type ChannelMessage,
  type ChannelMessageBody,
} from './protocol.js';

/** What a channel end needs to know about the two nodes. */
export interface ChannelPeerCheck {
  nodeName: string;
  /** The SPIFFE ID a node daemon's SVID must carry. */
  nodeSpiffeId: (node: string) => string;
  bundles: () => TrustBundles;
  wireguard?: WireguardKeyAgreement | undefined;
  /** The inventory's WireGuard key of a node; when defined, the peer must prove possession. */
  expectedPeerWireguardKey?: ((node: string) => string | undefined) | undefined;
  /** Server side: the node a TCP source address belongs to (the hello's node must match). */
  nodeForAddress?: ((address: string) => string | undefined) | undefined;
}

export interface ChannelTimers {
  clock: Clock;
  /** TLS + hello budget. */
  openTimeoutMs: number;
  /** A ping is sent this often while the channel is up. */
  pingIntervalMs: number;
  /** The pong must arrive within this; otherwise the channel is closed (ping-timeout). */
  pingTimeoutMs: number;
}

/** TLS exporter label of the channel id (RFC 8446 §7.5). */
export const CHANNEL_ID_LABEL = 'EXPORTER-meshauth-channel-id';

/**
 * One established node channel: a TLS 1.3 connection between two node daemons, each authenticated
 * by its node SVID and bound to its node's WireGuard key (the per-pair handshake's proof,
 * wireguard-proof.ts, over this connection's exported keying material). Carries versioned,
 * length-prefixed frames (protocol.ts). Closed on framing errors, ping timeouts, the peer node
 * SVID's expiry, or by its owner; close() is idempotent.
 */
export class ChannelConnection implements AuthenticatorConnection {
  /**
   * Id of the channel, the same on both ends (64 bits of the TLS exporter, label
   * CHANNEL_ID_LABEL): in audit events and logs of both nodes.
   */
  readonly id: string;
  readonly hash: 'sha256' | 'sha384';
  readonly openedAtMs: number;
  /** Fingerprints of the peer's node chain and its anchors (revoked when they leave the bundle). */
  readonly peerTrust: ChainAnchors;
  /** Earliest notAfter of the peer node's chain and its anchors. */
  readonly peerExpiresAtMs: number;
  private pingTimer: Timer | undefined;
  private pongTimer: Timer | undefined;
  private expiryTimer: Timer | undefined;
  private pingSeq = 0;
  private closedReason: string | undefined;
  /** The close was announced with a `bye` (by either end): nobody re-dials it. */
  private leaving = false;
  private handler: ((m: ChannelMessage) => void) | undefined;
  private readonly closeListeners: Array<(reason: string) => void> = [];
  /** Messages refused (bad schema) without closing: bounded before the channel gives up. */
  private refused = 0;
  /** Bytes sent and frames received (metrics, bench). */
  framesIn = 0;
  framesOut = 0;

  private constructor(
    readonly socket: TLSSocket,
    readonly role: TlsRole,
    readonly peerNode: string,
    readonly peerSpiffeId: string,
    peer: { trust: ChainAnchors; expiresAtMs: number },
    leftover: unknown[],
    /** The opening's decoder: it may hold the start of the next frame. */
    private readonly decoder: FrameDecoder,
    private readonly timers: ChannelTimers,
    private readonly onRefused: (reason: string, message: string) => void,
  ) {
    this.hash = cipherSuiteHash(socket.getCipher().standardName);
    this.id = socket.exportKeyingMaterial(8, CHANNEL_ID_LABEL, Buffer.alloc(0)).toString('hex');
    this.openedAtMs = timers.clock.now();
    this.peerTrust = peer.trust;
    this.peerExpiresAtMs = peer.expiresAtMs;
    this.pending = leftover;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.close('channel-closed'));
    socket.on('error', () => this.close('channel-closed'));
    this.pingTimer = timers.clock.setInterval(() => this.ping(), timers.pingIntervalMs);
    this.expiryTimer = timers.clock.setTimeout(
      () => this.close('svid-expired'),
      Math.max(0, peer.expiresAtMs - timers.clock.now()),
    );
  }

  private pending: unknown[];

  /**
   * Run the channel's opening on a secured socket: TLS 1.3 and ALPN, the peer's node SVID, hellos
   * with WireGuard proofs both ways. Rejects with a HandshakeError (reason code) and destroys the
   * socket on any failure.
   */
  static open(
    socket: TLSSocket,
    role: TlsRole,
    /** Client: the node dialled. Server: undefined (learnt from the hello and checked). */
    dialledNode: string | undefined,
    check: ChannelPeerCheck,
    timers: ChannelTimers,
    onRefused: (reason: string, message: string) => void,
  ): Promise<ChannelConnection> {
    return new Promise((resolve, reject) => {
      let done = false;
      const decoder = new FrameDecoder(MAX_FRAME_BYTES);
      const fail = (err: unknown): void => {
        if (done) return;
        done = true;
        timer.cancel();
        socket.removeListener('data', onData);
        socket.destroy();
        reject(
          err instanceof HandshakeError
            ? err
            : new HandshakeError('internal-error', `open channel: ${messageOf(err)}`, { cause: err }),
        );
      };
      const finish = (c: ChannelConnection): void => {
        done = true;
        timer.cancel();
        socket.removeListener('data', onData);
        resolve(c);
      };
      const timer = timers.clock.setTimeout(
        () => fail(new HandshakeError('timeout', `open channel: no hello within ${timers.openTimeoutMs} ms`)),
        timers.openTimeoutMs,
      );
      /** Client: the server's hello passed; the channel is up once the server's next frame is not a refusal. */
      let accepted: ((rest: unknown[]) => ChannelConnection) | undefined;
      const peerRefusal = (value: unknown): HandshakeError | undefined => {
        const m = parseChannelMessage(value);
        if (m.t !== 'error') return undefined;
        return new HandshakeError(
          'peer-rejected',
          `open channel: the peer refused the channel: ${m.reason}`,
          {
            details: { peerReason: m.reason },
          },
        );
      };
      const onData = (chunk: Buffer): void => {
        if (done) return;
        try {
          const frames = decoder.push(chunk);
          if (frames.length === 0) return;
          if (accepted) {
            const refusal = peerRefusal(frames[0]);
            if (refusal) throw refusal;
            return finish(accepted(frames));
          }
          const hello = parseChannelMessage(frames[0]);
          if (hello.t === 'error')
            throw new HandshakeError(
              'peer-rejected',
              `open channel: the peer refused the channel: ${hello.reason}`,
              {
                details: { peerReason: hello.reason },
              },
            );
          if (hello.t !== 'hello')
            throw protocolError(`open channel: first frame is "${hello.t}", want hello`);
          const peerNode = hello.node;
          if (hello.peerNode !== check.nodeName)
            throw new HandshakeError(
              'node-mismatch',
              `open channel: hello addressed to ${hello.peerNode}, this node is ${check.nodeName}`,
            );
          if (dialledNode !== undefined && peerNode !== dialledNode)
            throw new HandshakeError(
              'node-mismatch',
              `open channel: dialled ${dialledNode}, peer says it is ${peerNode}`,
            );
          if (peerNode === check.nodeName)
            throw new HandshakeError(
              'node-mismatch',
              `open channel: peer claims this node's own name ${peerNode}`,
            );
          // The server answers as soon as it knows who the client claims to be, before judging
          // it: the client can then tell a server whose WireGuard key is not the inventory's
          // (wireguard-key-mismatch) from a refusal. The proof is bound to this connection and
          // says nothing the client could use elsewhere.
          if (role === 'server') sendHello(socket, role, peerNode, check);
          if (role === 'server' && check.nodeForAddress) {
            const addr = socket.remoteAddress ?? '';
            const owner = check.nodeForAddress(addr);
            if (owner !== peerNode)
              throw new HandshakeError(
                'node-mismatch',
                `open channel: ${addr} belongs to ${owner ?? 'no node'}, hello says ${peerNode}`,
              );
          }
          const bundles = check.bundles();
          const expectedId = check.nodeSpiffeId(peerNode);
          const verified = verifyPeerChain(
            peerChainDer(socket),
            bundles,
            expectedId,
            new Date(timers.clock.now()),
          );
          const anchors = chainAnchors(verified.chainDer, bundles, trustDomainOf(expectedId));
          if (anchors.anchorsDer.length === 0)
            throw new HandshakeError(
              'svid-untrusted',
              `open channel: ${expectedId} reaches no authority of its bundle`,
            );
          const expected = check.expectedPeerWireguardKey?.(peerNode);
          if (expected !== undefined) {
            if (hello.wgPublicKey !== expected)
              throw new HandshakeError(
                'wireguard-key-mismatch',
                `open channel: node ${peerNode} presented WireGuard key ${hello.wgPublicKey ?? '(none)'}, inventory has ${expected}`,
              );
            const own = check.wireguard;
            const clientNode = role === 'client' ? check.nodeName : peerNode;
            const serverNode = role === 'client' ? peerNode : check.nodeName;
            const ok =
              own !== undefined &&
              verifyWireguardProof(
                own,
                expected,
                {
                  role: role === 'client' ? 'server' : 'client',
                  ekm: bindingKeyingMaterial(socket),
                  clientNode,
                  serverNode,
                  clientPublicKey: role === 'client' ? own.publicKey : expected,
                  serverPublicKey: role === 'client' ? expected : own.publicKey,
                },
                hello.wgProof,
              );
            if (!ok)
              throw new HandshakeError(
                'wireguard-key-proof-invalid',
                `open channel: node ${peerNode} did not prove possession of WireGuard key ${expected}`,
              );
          }
          // The server answers only now: it knows who the client claims to be.
          const build = (rest: unknown[]): ChannelConnection =>
            new ChannelConnection(
              socket,
              role,
              peerNode,
              expectedId,
              {
                trust: anchors.anchors,
                expiresAtMs: Math.min(verified.earliestNotAfterMs, earliestNotAfterMs(anchors.anchorsDer)),
              },
              rest,
              decoder,
              timers,
              onRefused,
            );
          // The server has judged us and answers with its first frame (its authenticator
          // requests) or a refusal; the client waits for it before using the channel.
          if (role === 'server') return finish(build(frames.slice(1)));
          accepted = build;
          if (frames.length > 1) {
            const refusal = peerRefusal(frames[1]);
            if (refusal) throw refusal;
            finish(build(frames.slice(1)));
          }
        } catch (err) {
          // Tell the peer why before closing (best effort; the reason is a stable code).
          if (err instanceof HandshakeError && !socket.destroyed)
            socket.write(encodeFrame(message({ t: 'error', reason: err.reason, ref: 'hello' })));
          fail(err);
        }
      };
      try {
        if (socket.getProtocol() !== MESHAUTH_TLS_VERSION)
          throw new HandshakeError('tls-version', `open channel: negotiated ${String(socket.getProtocol())}`);
        if (socket.alpnProtocol !== CHANNEL_ALPN)
          throw new HandshakeError(
            'channel-unsupported',
            `open channel: peer did not negotiate ALPN ${CHANNEL_ALPN}`,
          );
        socket.on('data', onData);
        socket.once('close', () =>
          fail(new HandshakeError('peer-unreachable', 'open channel: closed during the hello')),
        );
        if (role === 'client') sendHello(socket, role, dialledNode!, check);
      } catch (err) {
        fail(err);
      }
    });
  }

  /**
   * TLS exporter of this connection (RFC 8446 §7.5), memoized per label and length: the
   * authenticator keys are constant for the connection's life.
   */
  exportKeyingMaterial(length: number, label: string): Buffer {
    const k = `${length}:${label}`;
    let v = this.exported.get(k);
    if (!v) {
      v = this.socket.exportKeyingMaterial(length, label, Buffer.alloc(0));
      this.exported.set(k, v);
    }
    return v;
  }

  private readonly exported = new Map<string, Buffer>();

  /** Install the message handler; frames that arrived with the hello are delivered now. */
  start(handler: (m: ChannelMessage) => void): void {
    this.handler = handler;
    const early = this.pending;
    this.pending = [];
    for (const v of early) this.dispatch(v);
  }

  get tlsVersion(): string {
    return this.socket.getProtocol() ?? MESHAUTH_TLS_VERSION;
  }

  get cipher(): string {
    const c = this.socket.getCipher();
    return c.standardName ?? c.name;
  }

  /** A ping is out and its pong not back yet. */
  get awaitingPong(): boolean {
    return this.pongTimer !== undefined;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  get closeReason(): string | undefined {
    return this.closedReason;
  }

  /** Whether the channel was closed on purpose by either end (`bye`), not lost. */
  get left(): boolean {
    return this.leaving;
  }

  /**
   * Close on purpose, telling the peer why in a `bye` frame so that it closes without re-dialling.
   * The socket is ended after the frame (the peer's close finishes it) and destroyed after the
   * ping deadline at the latest. Idempotent, like close().
   */
  leave(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.leaving = true;
    const socket = this.socket;
    if (!socket.destroyed) {
      // end() uncorks: the frame leaves before the FIN.
      socket.end(encodeFrame(message({ t: 'bye', reason })));
      const t = this.timers.clock.setTimeout(() => socket.destroy(), this.timers.pingTimeoutMs);
      socket.once('close', () => t.cancel());
    }
    this.finish(reason);
  }

  onClose(fn: (reason: string) => void): void {
    if (this.closedReason !== undefined) fn(this.closedReason);
    else this.closeListeners.push(fn);
  }

  /**
   * Queue one frame. Frames sent in the same tick leave in one TLS write (cork until the next
   * tick): a burst of pairs costs a few records, not one record and syscall per pair.
   */
  send(body: ChannelMessageBody): boolean {
    if (this.closedReason !== undefined || this.socket.destroyed) return false;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(encodeFrame(message(body)));
    this.framesOut++;
    return true;
  }

  private corked = false;

  close(reason: string = 'closed'): void {
    if (this.closedReason !== undefined) return;
    if (!this.socket.destroyed) {
      if (reason !== 'channel-closed') this.socket.end();
      this.socket.destroy();
    }
    this.finish(reason);
  }

  private finish(reason: string): void {
    this.closedReason = reason;
    this.pingTimer?.cancel();
    this.pongTimer?.cancel();
    this.expiryTimer?.cancel();
    for (const l of this.closeListeners.splice(0)) l(reason);
  }

  private ping(): void {
    if (this.pongTimer) return; // one outstanding ping at a time
    const seq = ++this.pingSeq;
    this.send({ t: 'ping', seq });
    this.pongTimer = this.timers.clock.setTimeout(
      () => this.close('ping-timeout'),
      this.timers.pingTimeoutMs,
    );
  }

  private onData(chunk: Buffer): void {
    if (this.closedReason !== undefined) return;
    let frames: unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      // Framing is lost (oversized or empty frame): nothing after it can be trusted to line up.
      this.onRefused('protocol-error', messageOf(err));
      this.close('protocol-error');
      return;
    }
    for (const f of frames) {
      if (this.closedReason !== undefined) return;
      if (this.handler) this.dispatch(f);
      else this.pending.push(f);
    }
  }

  private dispatch(value: unknown): void {
    this.framesIn++;
    let m: ChannelMessage;
    try {
      m = parseChannelMessage(value);
    } catch (err) {
      // One bad message: refused and reported; framing is intact, so the channel survives it,
      // up to a bound (a peer that only sends garbage is closed).
      this.onRefused('protocol-error', messageOf(err));
      this.send({ t: 'error', reason: 'protocol-error' });
      if (++this.refused > 64) this.close('protocol-error');
      return;
    }
    if (m.t === 'ping') {
      this.send({ t: 'pong', seq: m.seq });
      return;
    }
    if (m.t === 'bye') {
      this.leaving = true;
      this.close(`peer-${m.reason}`.slice(0, 64));
      return;
    }
    if (m.t === 'pong') {
      if (m.seq === this.pingSeq) {
        this.pongTimer?.cancel();
        this.pongTimer = undefined;
      }
      return;
    }
    try {
      this.handler!(m);
    } catch (err) {
      this.onRefused('internal-error', messageOf(err));
    }
  }
}

function sendHello(socket: TLSSocket, role: TlsRole, peerNode: string, check: ChannelPeerCheck): void {
  const own = check.wireguard;
  const peerKey = check.expectedPeerWireguardKey?.(peerNode);
  let wgProof: string | undefined;
  if (own && peerKey !== undefined) {
    wgProof = wireguardProof(own, peerKey, {
      role,
      ekm: bindingKeyingMaterial(socket),
      clientNode: role === 'client' ? check.nodeName : peerNode,
      serverNode: role === 'client' ? peerNode : check.nodeName,
      clientPublicKey: role === 'client' ? own.publicKey : peerKey,
      serverPublicKey: role === 'client' ? peerKey : own.publicKey,
    });
  }
  socket.write(
    encodeFrame(
      message({ t: 'hello', node: check.nodeName, peerNode, wgPublicKey: own?.publicKey, wgProof }),
    ),
  );
}
