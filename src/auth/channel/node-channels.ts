import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { connect, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { AuditSink } from '../../audit/index.js';
import { silentLogger } from '../../log.js';
import type { Svid, TrustBundles } from '../../spiffe/index.js';
import { backoffMs } from '../../sync.js';
import { systemClock, type Clock, type Timer } from '../../time.js';
import { SecureContextCache } from '../../tls/index.js';
import type { WireguardKeyAgreement } from '../../wireguard/index.js';
import {
  HandshakeError,
  messageOf,
  rateLimitKey,
  TokenBucketLimiter,
  type HandshakeReason,
} from '../handshake/index.js';
import type { AuthenticateRequest, HandshakeFailureEvent } from '../handshake/index.js';
import { isPacedRefusal, type ResponderAuditPacer } from '../audit-pacing.js';
import type { AuthenticateResult, Authenticator, ServerAuthenticated } from '../manager.js';
import { trustLost, bundleFingerprints } from '../trust.js';
import { ChannelConnection, type ChannelPeerCheck, type ChannelTimers } from './connection.js';
import { channelsToEvict, DEFAULT_MAX_CHANNELS, type EvictionCandidate } from './eviction.js';
import { ChannelEventAudit, UNKNOWN_NODE } from './event-audit.js';
import { CHANNEL_ALPN, MAX_REQUESTS_PER_FRAME, type ChannelMessage } from './protocol.js';
import { ProofExchange, type ChannelUse, type ProofEvent } from './proofs.js';

/**
 * Bounds on the connections the channel listener holds before they are channels (TCP accepted,
 * TLS and hello not done yet): anyone who can reach the port can open them, nothing verified.
 * Checked at accept, before any TLS work, as the per-pair handshake server checks its own
 * (handshake/server.ts). Established channels are bounded by maxChannels instead.
 */
export interface ChannelAcceptLimits {
  /**
   * Opening connections at most from sources that are not peer nodes (nodeForAddress), all
   * together; more are closed at once (too-many-connections). A peer node's own address is bounded
   * by maxPendingPerAddress alone, so that strangers filling this bound cannot lock the nodes out.
   */
  maxPending: number;
  /**
   * Opening connections at most from one source address (a peer node's own address by itself,
   * any other IPv6 source by its /64, see acceptKey); more are closed at once
   * (too-many-connections-from-address). A peer node dials one channel at a time.
   */
  maxPendingPerAddress: number;
  /** Token bucket per source address: refill rate of accepted connections (rate-limited when empty). */
  perAddressRatePerSec: number;
  /** Token bucket per source address: size. */
  perAddressBurst: number;
  /** Source addresses whose buckets are remembered (see TokenBucketLimiter), peer nodes' and others' each. */
  maxTrackedAddresses: number;
}

/**
 * Defaults of ChannelAcceptLimits (not configurable: a peer node opens one channel and re-dials
 * with backoff, reconnectBaseMs 200 ms and up, so these leave legitimate peers far below the bounds).
 * maxPending matches the handshake server's maxConnections default.
 */
export const DEFAULT_CHANNEL_ACCEPT_LIMITS: Readonly<ChannelAcceptLimits> = Object.freeze({
  maxPending: 256,
  maxPendingPerAddress: 8,
  perAddressRatePerSec: 10,
  perAddressBurst: 20,
  maxTrackedAddresses: 4096,
});

export interface NodeChannelsOptions {
  nodeName: string;
  /** This node daemon's own SVID (TLS on every channel); undefined while none is held. */
  nodeSvid: () => Svid | undefined;
  /** SPIFFE ID a node daemon's SVID carries (the peer's must match exactly). */
  nodeSpiffeId: (node: string) => string;
  /** Workload SVIDs (authenticators) and the trust bundles. */
  identity: { svid(spiffeId: string): Svid | undefined; bundles(): TrustBundles };
  /** Where a node's channel listener is; undefined for an unknown node. */
  channelEndpoint: (node: string) => { address: string; port: number } | undefined;
  /** Inventory: the node a TCP source address belongs to (inbound channels). */
  nodeForAddress: (address: string) => string | undefined;
  /** Inventory: whether a workload runs on a node. */
  isWorkloadOnNode: (spiffeId: string, node: string) => boolean;
  /** Local workloads that policy pairs with a workload on `node`: proved as soon as a channel is up. */
  proofsFor?: (node: string) => readonly string[];
  wireguard?: WireguardKeyAgreement;
  expectedPeerWireguardKey?: (node: string) => string | undefined;
  /** Writes the reverse entry a peer asked for (through the same write check as every entry). Throws a `{reason}` error to refuse. */
  onPairRequested: (r: ServerAuthenticated) => void;
  /**
   * Paces the reverse entries peers ask for by this node's audit queue (the ResponderAuditPacer
   * shared with the handshake server); a pair message waits at most timeoutMs. See ProofExchange.
   */
  auditPacer?: Pick<ResponderAuditPacer, 'admit'>;
  /** When the channel cannot be used (peer does not speak it): the per-pair handshake. */
  fallback?: Authenticator;
  maxEntryTtlMs: number;
  /** Budget for a pair: channel open + proofs. */
  timeoutMs?: number;
  openTimeoutMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** After a peer refused the channel, use the per-pair handshake with it this long before trying again. */
  unsupportedRetryMs?: number;
  /**
   * A channel that carried no pair (either way) for this long is closed and not re-dialled; the
   * next pair opens it again. Default 10 minutes; 0 keeps channels open.
   */
  idleTimeoutMs?: number;
  /**
   * Channels kept open at once (both directions, dials in progress included). A new channel at the
   * cap first closes the least recently used one, idle before busy (see channelsToEvict); the
   * evicted peer is not re-dialled until a pair needs it again. Default DEFAULT_MAX_CHANNELS.
   */
  maxChannels?: number;
  /** A channel was closed to make room (meshauth_channel_evictions_total). */
  onEvicted?: (e: ChannelEviction) => void;
  /** Bounds on connections still opening (see ChannelAcceptLimits); defaults DEFAULT_CHANNEL_ACCEPT_LIMITS. */
  acceptLimits?: Partial<ChannelAcceptLimits>;
  /**
   * A connection refused at accept (stage `accept`, reason `too-many-connections`,
   * `too-many-connections-from-address` or `rate-limited`), before any TLS: for metrics and the
   * accept-refusal audit windows (AuthReporter.channelAcceptRefused). Must not throw (it is caught).
   */
  onAcceptRefused?: (f: HandshakeFailureEvent) => void;
  clock?: Clock;
  audit?: AuditSink;
  logger?: Logger;
}

/** A channel failure or refused proof/pair, as audited. */
export interface ChannelEvent {
  reason: string;
  message: string;
  peerNode?: string | undefined;
  channel?: string | undefined;
  localId?: string | undefined;
  remoteId?: string | undefined;
  stage: 'open' | 'proof' | 'pair' | 'message';
}

/** A channel closed to stay under maxChannels, as logged and counted. */
export interface ChannelEviction {
  /** The evicted channel's peer node and channel id. */
  node: string;
  channel: string;
  /** Time since the channel's last pair (ms). */
  idleMs: number;
  /** Whether a proof exchange or pair was in flight on it (only when no idle channel was left). */
  busy: boolean;
  /** The node whose channel needed the room. */
  for: string;
}

interface PeerState {
  channel?: ChannelConnection;
  proofs?: ProofExchange;
  dialing?: Promise<ChannelConnection>;
  attempts: number;
  retryTimer?: Timer;
  /** The peer refused the channel protocol: per-pair until this time. */
  unsupportedUntilMs: number;
  /** Someone asked for this peer: keep the channel (reconnect when it drops). */
  wanted: boolean;
  /** Last pair asked for or received over the channel to this node (clock ms). */
  lastUsedMs: number;
  waiters: Array<() => void>;
}

/**
 * Node channels: one TLS 1.3 connection per pair of nodes, carrying RFC 9261 identity proofs for
 * the workloads of both nodes and turning them into pair entries without a handshake per pair.
 *
 * Either node may dial. When both do at once, the channel dialled by the node with the lower name
 * is kept on both sides and the other closed, so both converge on the same connection.
 * An established channel that drops is re-dialled with exponential backoff while it is wanted.
 *
 * `authenticate` implements the manager's Authenticator: when the channel holds a valid proof of the
 * remote workload and the peer accepted our workload's proof, it resolves at once (no round trip, no
 * public-key operation) and tells the peer, in one message, to write the reverse entry; the peer
 * re-checks its own proofs and policy first. A peer that does not speak the channel is served by the
 * per-pair handshake (`fallback`).
 */
export class NodeChannels implements Authenticator {
  private readonly peers = new Map<string, PeerState>();
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly contexts = new SecureContextCache();
  private server: Server | undefined;
  private closed = false;
  private readonly timers: ChannelTimers;
  private readonly check: ChannelPeerCheck;
  /** Channels opened (both directions) and pair messages sent (bench, tests). */
  readonly counters = {
    opened: 0,
    pairsSent: 0,
    pairsReceived: 0,
    fallbacks: 0,
    evictions: 0,
    refusedAtCap: 0,
    /** Connections refused at accept (any reason), and closed for not finishing TLS in time. */
    refusedAtAccept: 0,
    openTimeouts: 0,
  };
  private readonly acceptLimits: ChannelAcceptLimits;
  /** Token buckets of sources that are not peer nodes, and of peer nodes' own addresses. */
  private readonly limiter: TokenBucketLimiter;
  private readonly nodeLimiter: TokenBucketLimiter;
  /** Accepted connections not yet channels (TLS or hello in progress), and their count per address key. */
  private readonly pending = new Set<Socket>();
  /** Those of `pending` from sources that are not peer nodes (bounded by maxPending). */
  private pendingFromOthers = 0;
  private readonly pendingByAddress = new Map<string, number>();
  /** Accept refusals logged at most once per second each, with the count of those not logged. */
  private readonly refusalLog = new Map<string, { lastMs: number; suppressed: number }>();
  private readonly maxChannels: number;
  /** Bounds the refusal records per peer (ChannelEventAudit). */
  private readonly eventAudit: ChannelEventAudit | undefined;

  constructor(private readonly opts: NodeChannelsOptions) {
    if (!(opts.maxEntryTtlMs > 0)) throw new RangeError('node channels: maxEntryTtlMs must be > 0');
    this.maxChannels = opts.maxChannels ?? DEFAULT_MAX_CHANNELS;
    if (!(Number.isInteger(this.maxChannels) && this.maxChannels >= 1))
      throw new RangeError(`node channels: maxChannels must be an integer >= 1 (got ${opts.maxChannels})`);
    this.clock = opts.clock ?? systemClock;
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'node-channel' });
    this.acceptLimits = { ...DEFAULT_CHANNEL_ACCEPT_LIMITS, ...(opts.acceptLimits ?? {}) };
    for (const [k, v] of Object.entries(this.acceptLimits))
      if (!(typeof v === 'number' && v > 0))
        throw new RangeError(`node channels: acceptLimits.${k} must be > 0 (got ${String(v)})`);
    const buckets = {
      ratePerSec: this.acceptLimits.perAddressRatePerSec,
      burst: this.acceptLimits.perAddressBurst,
      maxKeys: this.acceptLimits.maxTrackedAddresses,
    };
    // Two tables: a flood from fresh addresses fills only the others' (whose overflow bucket it
    // then shares), never the table of the nodes' addresses.
    this.limiter = new TokenBucketLimiter(buckets);
    this.nodeLimiter = new TokenBucketLimiter(buckets);
    this.eventAudit = opts.audit
      ? new ChannelEventAudit({ audit: opts.audit, clock: this.clock })
      : undefined;
    this.timers = {
      clock: this.clock,
      openTimeoutMs: opts.openTimeoutMs ?? 5000,
      pingIntervalMs: opts.pingIntervalMs ?? 15_000,
      pingTimeoutMs: opts.pingTimeoutMs ?? 5000,
    };
    this.check = {
      nodeName: opts.nodeName,
      nodeSpiffeId: opts.nodeSpiffeId,
      bundles: () => opts.identity.bundles(),
      wireguard: opts.wireguard,
      expectedPeerWireguardKey: opts.expectedPeerWireguardKey,
      nodeForAddress: opts.nodeForAddress,
    };
    const idle = opts.idleTimeoutMs ?? 600_000;
    if (idle > 0)
      this.idleSweep = this.clock.setInterval(() => this.closeIdle(idle), Math.max(1000, idle / 4));
  }

  private readonly idleSweep: Timer | undefined;

  /** Close channels that carried no pair for `idleMs`; they are not re-dialled until needed. */
  closeIdle(idleMs: number): number {
    const now = this.clock.now();
    let n = 0;
    for (const st of this.peers.values()) {
      const c = st.channel;
      if (!c || c.closed || now - st.lastUsedMs < idleMs) continue;
      st.wanted = false;
      c.leave('idle');
      n++;
    }
    return n;
  }

  /** Accept channels on addr; resolves with the bound port (0 = any). */
  listen(addr: { host: string; port: number }): Promise<{ port: number }> {
    if (this.server) return Promise.reject(new Error('node channels: already listening'));
    // Plain TCP first, TLS per socket (onTcpConnection): the accept limits are checked before any
    // TLS work, which tls.Server would start for every connection it accepts.
    const server = createServer({ noDelay: true }, (socket) => this.onTcpConnection(socket));
    server.on('error', (err) =>
      this.logger.error({ event: 'channel_listener_error', err }, 'node channel listener error'),
    );
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(addr.port, addr.host, () => {
        server.removeListener('error', reject);
        const a = server.address();
        resolve({ port: typeof a === 'object' && a ? a.port : addr.port });
      });
    });
  }

  /** Connections accepted and still opening (TLS or hello), all addresses (tests, metrics). */
  get pendingConnections(): number {
    return this.pending.size;
  }

  /** The established channel to a node, if any. */
  channel(node: string): ChannelConnection | undefined {
    const c = this.peers.get(node)?.channel;
    return c && !c.closed ? c : undefined;
  }

  /** Open channels (tests, metrics). */
  get openChannels(): number {
    let n = 0;
    for (const st of this.peers.values()) if (st.channel && !st.channel.closed) n++;
    return n;
  }

  /** Whether a channel to a node is open, being dialled, or waiting for a re-dial (tests, metrics). */
  peerState(node: string): { open: boolean; dialing: boolean; redialScheduled: boolean } {
    const st = this.peers.get(node);
    return {
      open: !!st?.channel && !st.channel.closed,
      dialing: !!st?.dialing,
      redialScheduled: !!st?.retryTimer,
    };
  }

  /** The proof state of the channel to a node (tests, metrics). */
  proofs(node: string): ProofExchange | undefined {
    return this.channel(node) ? this.peers.get(node)?.proofs : undefined;
  }

  /** Open (or reuse) the channel to `node`. Rejects with a HandshakeError reason code. */
  ensureChannel(node: string): Promise<ChannelConnection> {
    if (this.closed) return Promise.reject(new HandshakeError('aborted', 'node channels: closed'));
    const st = this.peer(node);
    st.wanted = true;
    st.lastUsedMs = this.clock.now();
    if (st.channel && !st.channel.closed) return Promise.resolve(st.channel);
    if (st.dialing) return st.dialing;
    this.makeRoom(node);
    const p = this.dial(node).finally(() => {
      if (st.dialing === p) st.dialing = undefined;
    });
    st.dialing = p;
    return p;
  }

  async authenticate(req: AuthenticateRequest): Promise<AuthenticateResult> {
    const started = this.clock.now();
    const st = this.peer(req.peerNode);
    if (st.unsupportedUntilMs > started && this.opts.fallback) return this.fallBack(req);
    let channel: ChannelConnection;
    try {
      channel = await this.ensureChannel(req.peerNode);
    } catch (err) {
      // No channel (the peer does not speak it, holds no node SVID, refused ours, or is down):
      // the per-pair handshake makes the same checks, so falling back loses no guarantee.
      if (this.mayFallBackFrom(err)) return this.fallBack(req);
      throw err;
    }
    let proofs = st.proofs!;
    const deadline = started + (this.opts.timeoutMs ?? 5000);
    for (;;) {
      if (channel.closed && st.channel && !st.channel.closed && st.proofs) {
        // Replaced (simultaneous open, reconnect): carry on over the channel in use now.
        channel = st.channel;
        proofs = st.proofs;
      } else if (channel.closed && channel.left && deadline > this.clock.now()) {
        // The peer is at its channel cap with every channel busy: per-pair for a while.
        if (st.unsupportedUntilMs > this.clock.now()) {
          if (this.opts.fallback) return this.fallBack(req);
          throw new HandshakeError(
            'channel-unsupported',
            `node channel to ${req.peerNode}: refused (${channel.closeReason ?? 'closed'})`,
          );
        }
        // Closed on purpose under us (evicted by either end, idle): dial again, fresh proofs.
        try {
          channel = await this.ensureChannel(req.peerNode);
        } catch (err) {
          if (this.mayFallBackFrom(err)) return this.fallBack(req);
          throw err;
        }
        proofs = st.proofs!;
      }
      const ready = proofs.pairReady(req.localId, req.remoteId);
      if (ready.ok) {
        const r = this.pairResult(channel, proofs, req, ready.use, started);
        this.counters.pairsSent++;
        return r;
      }
      if (ready.final) throw new HandshakeError(ready.reason as HandshakeReason, ready.message);
      proofs.request(req.localId, req.remoteId);
      const left = deadline - this.clock.now();
      if (left <= 0 || channel.closed)
        throw new HandshakeError(
          channel.closed ? 'channel-closed' : 'proof-missing',
          `authenticate over channel ${channel.id}: ${ready.message}`,
        );
      await this.changed(st, left, req.signal);
      if (req.signal?.aborted) throw new HandshakeError('aborted', 'authenticate: aborted by the caller');
    }
  }

  /** Our SVID for a workload was renewed or removed: prove it again (or withdraw it) on every channel. */
  onLocalSvidChanged(spiffeId: string): void {
    for (const st of this.peers.values()) st.proofs?.localSvidChanged(spiffeId);
  }

  /** The trust bundles changed: proofs and channels whose authorities left are dropped. */
  onTrustBundlesChanged(bundles: TrustBundles): void {
    const fps = bundleFingerprints(bundles);
    for (const st of this.peers.values()) {
      const c = st.channel;
      if (!c || c.closed) continue;
      if (trustLost({ chains: [c.peerTrust] }, fps)) {
        c.close('bundle-revoked');
        continue;
      }
      st.proofs?.trustBundlesChanged(fps);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.idleSweep?.cancel();
    for (const st of this.peers.values()) {
      st.retryTimer?.cancel();
      st.channel?.close('closed');
      for (const w of st.waiters.splice(0)) w();
    }
    for (const socket of [...this.pending]) socket.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    // The refusals counted in open windows get their summary records now.
    this.eventAudit?.close();
  }

  // --- internals ---

  private peer(node: string): PeerState {
    let st = this.peers.get(node);
    if (!st) {
      st = { attempts: 0, unsupportedUntilMs: 0, wanted: false, waiters: [], lastUsedMs: this.clock.now() };
      this.peers.set(node, st);
    }
    return st;
  }

  /**
   * Close least recently used channels until one more (to `node`) fits under maxChannels. Dials in
   * progress count against the cap but are not closed; a channel with a proof exchange or a pair
   * in flight is closed only when no idle one is left. An evicted peer is not re-dialled: its next
   * pair dials again (fresh proofs on a fresh exporter), or is served per-pair if it cannot.
   *
   * With `idleOnly` (a channel the peer dialled) only idle channels are closed, and false is
   * returned when that cannot make room: peers that keep dialling in cannot push out channels
   * this node's own pairs are using.
   */
  private makeRoom(node: string, idleOnly = false): boolean {
    const open: EvictionCandidate[] = [];
    let dialing = 0;
    for (const [n, st] of this.peers) {
      if (n === node) continue;
      if (st.channel && !st.channel.closed)
        open.push({
          node: n,
          lastUsedMs: st.lastUsedMs,
          busy: st.waiters.length > 0 || !!st.proofs?.inFlight(),
        });
      else if (st.dialing) dialing++;
    }
    if (open.length + dialing < this.maxChannels) return true;
    const victims = channelsToEvict(open, this.maxChannels, dialing);
    if (idleOnly && victims.some((v) => open.find((o) => o.node === v)!.busy)) return false;
    const now = this.clock.now();
    for (const victim of victims) {
      const st = this.peers.get(victim)!;
      const c = st.channel!;
      const e: ChannelEviction = {
        node: victim,
        channel: c.id,
        idleMs: now - st.lastUsedMs,
        busy: open.find((o) => o.node === victim)!.busy,
        for: node,
      };
      st.wanted = false;
      st.retryTimer?.cancel();
      st.retryTimer = undefined;
      this.counters.evictions++;
      this.logger.info(
        {
          event: 'channel_evicted',
          node: e.node,
          channel: e.channel,
          idleMs: e.idleMs,
          busy: e.busy,
          forNode: e.for,
          maxChannels: this.maxChannels,
        },
        'node channel closed to stay under auth.channel.maxChannels (least recently used)',
      );
      c.leave('evicted');
      this.opts.onEvicted?.(e);
    }
    return open.length - victims.length + dialing < this.maxChannels;
  }

  /** Whether a failure to get a channel goes on per pair: when there is a fallback, unless aborted. */
  private mayFallBackFrom(err: unknown): boolean {
    if (!this.opts.fallback) return false;
    return !(err instanceof HandshakeError && err.reason === 'aborted');
  }

  private fallBack(req: AuthenticateRequest): Promise<AuthenticateResult> {
    this.counters.fallbacks++;
    return this.opts.fallback!.authenticate(req);
  }

  private pairResult(
    channel: ChannelConnection,
    proofs: ProofExchange,
    req: AuthenticateRequest,
    use: ChannelUse & { expiresAtMs: number; trust: AuthenticateResult['trust'] },
    started: number,
  ): AuthenticateResult {
    const now = this.clock.now();
    const seq = proofs.sendPair(req.localId, req.remoteId);
    const peerEntryWritten = proofs.peerWrote(seq);
    return {
      expiresAtMs: Math.min(use.expiresAtMs, now + this.opts.maxEntryTtlMs),
      durationMs: now - started,
      localSerial: use.localSerial,
      peerSerials: use.remoteSerials,
      peerNotAfterMs: use.remoteNotAfterMs,
      tlsVersion: channel.socket.getProtocol() ?? undefined,
      cipher: channel.socket.getCipher().standardName,
      ...(use.trust ? { trust: use.trust } : {}),
      channel: {
        id: channel.id,
        peerNode: channel.peerNode,
        pairSeq: seq,
        localProof: use.localProof,
        remoteProof: use.remoteProof,
      },
      peerEntryWritten,
    };
  }

  private changed(st: PeerState, ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        timer.cancel();
        signal?.removeEventListener('abort', finish);
        const i = st.waiters.indexOf(finish);
        if (i >= 0) st.waiters.splice(i, 1);
        resolve();
      };
      const timer = this.clock.setTimeout(finish, ms);
      signal?.addEventListener('abort', finish, { once: true });
      st.waiters.push(finish);
    });
  }

  private notify(node: string): void {
    const st = this.peers.get(node);
    if (!st) return;
    for (const w of st.waiters.splice(0)) w();
  }

  private dial(node: string): Promise<ChannelConnection> {
    const ep = this.opts.channelEndpoint(node);
    if (!ep)
      return Promise.reject(
        new HandshakeError('peer-unreachable', `open channel: no address for node ${node}`),
      );
    const svid = this.opts.nodeSvid();
    if (!svid)
      return Promise.reject(
        new HandshakeError('no-local-svid', 'open channel: this node holds no node SVID'),
      );
    return new Promise<ChannelConnection>((resolve, reject) => {
      let secured = false;
      const socket = connect({
        host: ep.address,
        port: ep.port,
        servername: sniName(node),
        secureContext: this.contexts.get(svid),
        // The server's node SVID is verified against the SPIFFE bundle (ChannelConnection.open).
        rejectUnauthorized: false,
        ALPNProtocols: [CHANNEL_ALPN],
      });
      socket.setNoDelay(true);
      const timer = this.clock.setTimeout(() => {
        socket.destroy();
        reject(
          new HandshakeError(
            'timeout',
            `open channel to ${node}: no TLS within ${this.timers.openTimeoutMs} ms`,
          ),
        );
      }, this.timers.openTimeoutMs);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        timer.cancel();
        if (secured) return;
        // Nothing listens for channels there (an older node, or channels off): per-pair.
        const reason = err.code === 'ECONNREFUSED' ? 'channel-unsupported' : 'peer-unreachable';
        reject(new HandshakeError(reason, `open channel to ${node}: ${err.message.split('\n')[0]}`));
      });
      socket.once('secureConnect', () => {
        secured = true;
        timer.cancel();
        ChannelConnection.open(socket, 'client', node, this.check, this.timers, (r, m) =>
          this.event({ reason: r, message: m, peerNode: node, stage: 'message' }),
        ).then(
          (c) => resolve(this.adopt(c)),
          (err: unknown) => {
            this.event({ reason: reasonOf(err), message: messageOf(err), peerNode: node, stage: 'open' });
            reject(err);
          },
        );
      });
    }).catch((err: unknown) => {
      const st = this.peer(node);
      if (err instanceof HandshakeError && err.reason === 'channel-unsupported') {
        st.unsupportedUntilMs = this.clock.now() + (this.opts.unsupportedRetryMs ?? 60_000);
      }
      throw err;
    });
  }

  /**
   * A TCP connection to the channel port. Refused at once, before any TLS, when the listener holds
   * acceptLimits.maxPending opening connections from sources that are not peer nodes (and this is
   * one of them), or maxPendingPerAddress from this source address,
   * or the address's token bucket is empty. Otherwise TLS runs with openTimeoutMs from accept to
   * finish (then the hello gets its own openTimeoutMs, ChannelConnection.open); the connection
   * counts against the limits until it is a channel or closed.
   */
  private onTcpConnection(raw: Socket): void {
    raw.on('error', () => {
      // Reported through the TLS socket or its close; a raw socket error must never be unhandled.
    });
    if (this.closed) return void raw.destroy();
    try {
      const address = raw.remoteAddress ?? 'unknown';
      const { key, fromNode } = this.acceptKey(address);
      const l = this.acceptLimits;
      const fromAddress = this.pendingByAddress.get(key) ?? 0;
      let refusal: { reason: HandshakeReason; message: string } | undefined;
      if (!fromNode && this.pendingFromOthers >= l.maxPending)
        refusal = {
          reason: 'too-many-connections',
          message: `accept channel: ${this.pendingFromOthers} connections opening from sources that are not peer nodes (limit ${l.maxPending})`,
        };
      else if (fromAddress >= l.maxPendingPerAddress)
        refusal = {
          reason: 'too-many-connections-from-address',
          message: `accept channel: ${fromAddress} connections opening from ${key} (limit ${l.maxPendingPerAddress})`,
        };
      else if (!(fromNode ? this.nodeLimiter : this.limiter).takeKey(key, this.clock.now()))
        refusal = {
          reason: 'rate-limited',
          message: `accept channel: ${address} exceeded ${l.perAddressRatePerSec}/s (burst ${l.perAddressBurst})`,
        };
      if (refusal) {
        raw.destroy();
        this.refusedAtAccept(refusal.reason, refusal.message, address, raw.remotePort);
        return;
      }
      this.pending.add(raw);
      if (!fromNode) this.pendingFromOthers++;
      this.pendingByAddress.set(key, fromAddress + 1);
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.pending.delete(raw);
        if (!fromNode) this.pendingFromOthers--;
        const n = (this.pendingByAddress.get(key) ?? 1) - 1;
        if (n > 0) this.pendingByAddress.set(key, n);
        else this.pendingByAddress.delete(key);
      };
      raw.once('close', release);
      const tls = new TLSSocket(raw, {
        isServer: true,
        requestCert: true,
        // The client's node SVID is verified against the SPIFFE bundle (ChannelConnection.open).
        rejectUnauthorized: false,
        ALPNProtocols: [CHANNEL_ALPN],
        SNICallback: (_name, cb) => {
          const svid = this.opts.nodeSvid();
          if (!svid) return cb(new Error('no node SVID held'));
          cb(null, this.contexts.get(svid));
        },
      });
      // tls.Server's own handshakeTimeout defaults to 120 s; a connection that sends nothing would
      // hold its place that long. This one is openTimeoutMs, on the injected clock.
      const tlsTimer = this.clock.setTimeout(() => {
        this.counters.openTimeouts++;
        this.logger.debug(
          { event: 'channel_tls_timeout', peer: `${address}:${raw.remotePort ?? 0}` },
          `accept channel: TLS not completed within ${this.timers.openTimeoutMs} ms`,
        );
        tls.destroy();
        raw.destroy();
      }, this.timers.openTimeoutMs);
      raw.once('close', () => tlsTimer.cancel());
      // TLS failures before the channel opens are not audited (anonymous, nothing verified).
      tls.on('error', () => tls.destroy());
      tls.once('secure', () => {
        tlsTimer.cancel();
        this.accept(tls, release);
      });
    } catch (err) {
      raw.destroy();
      this.logger.error({ event: 'channel_accept_failed', err }, 'accept channel: unexpected error');
    }
  }

  /**
   * The key a source address counts under for the accept limits: a peer node's own address (the
   * inventory's, nodeForAddress) by itself, any other source as rateLimitKey has it (IPv6 by its
   * /64, so that one host cannot mint fresh places from its interface identifiers). The nodes of
   * an IPv6 cluster commonly share one /64 (a /64 is one link's prefix, RFC 4291 §2.5.1, not one
   * host's): keyed by it, one host of that subnet holding maxPendingPerAddress connections would
   * lock every peer node on it out of this listener, and peers re-dialling together would share
   * one token bucket. `fromNode`: the source is a peer node (not bounded by maxPending).
   */
  private acceptKey(address: string): { key: string; fromNode: boolean } {
    let node: string | undefined;
    try {
      node = this.opts.nodeForAddress(address);
    } catch (err) {
      this.logger.error({ event: 'channel_node_for_address_threw', err }, 'nodeForAddress threw');
    }
    return node === undefined
      ? { key: rateLimitKey(address), fromNode: false }
      : { key: rateLimitKey(address, 128), fromNode: true };
  }

  private refusedAtAccept(reason: HandshakeReason, message: string, address: string, port?: number): void {
    this.counters.refusedAtAccept++;
    const f: HandshakeFailureEvent = {
      reason,
      message,
      peer: `${address}:${port ?? 0}`,
      peerAddress: address,
      stage: 'accept',
      durationMs: 0,
    };
    try {
      this.opts.onAcceptRefused?.(f);
    } catch (err) {
      this.logger.error({ event: 'channel_on_accept_refused_threw', err }, 'onAcceptRefused callback threw');
    }
    // These come in floods: logged at most once per second per reason, with the count not logged.
    const now = this.clock.now();
    const s = this.refusalLog.get(reason) ?? { lastMs: -Infinity, suppressed: 0 };
    if (now - s.lastMs < 1000) {
      s.suppressed++;
      this.refusalLog.set(reason, s);
      return;
    }
    this.refusalLog.set(reason, { lastMs: now, suppressed: 0 });
    this.logger.warn(
      { event: 'channel_accept_refused', reason, peer: f.peer, suppressed: s.suppressed },
      message,
    );
  }

  /** A connection whose TLS is done: run the hello; `release` once it is a channel or failed. */
  private accept(socket: TLSSocket, release: () => void): void {
    if (this.closed) {
      release();
      return void socket.destroy();
    }
    ChannelConnection.open(socket, 'server', undefined, this.check, this.timers, (r, m) =>
      this.event({ reason: r, message: m, stage: 'message' }),
    ).then(
      (c) => {
        release();
        this.adopt(c);
      },
      (err: unknown) => {
        release();
        this.event({
          reason: reasonOf(err),
          message: `${socket.remoteAddress ?? '?'}: ${messageOf(err)}`,
          stage: 'open',
        });
      },
    );
  }

  /**
   * A verified channel: keep it, unless one to the same node exists and this one is not the
   * canonical one (dialled by the lower node name), in which case the newcomer is closed.
   */
  private adopt(c: ChannelConnection): ChannelConnection {
    const st = this.peer(c.peerNode);
    const dialler = c.role === 'client' ? this.opts.nodeName : c.peerNode;
    const canonical = dialler === [this.opts.nodeName, c.peerNode].sort()[0];
    const existing = st.channel;
    if (existing && !existing.closed) {
      if (!canonical) {
        c.close('duplicate-channel');
        return existing;
      }
      existing.close('duplicate-channel');
    }
    if (this.closed) {
      c.close('closed');
      return c;
    }
    // An inbound channel (or a dial that raced others) may find the cap reached. An inbound one
    // may only displace idle channels; otherwise it is refused and the peer's pairs go per-pair.
    if ((!existing || existing.closed) && !this.makeRoom(c.peerNode, c.role === 'server')) {
      this.counters.refusedAtCap++;
      this.logger.info(
        { event: 'channel_refused_at_cap', node: c.peerNode, channel: c.id, maxChannels: this.maxChannels },
        'inbound node channel refused: auth.channel.maxChannels reached and every channel is busy',
      );
      c.leave('at-capacity');
      return c;
    }
    st.lastUsedMs = this.clock.now();
    this.counters.opened++;
    st.channel = c;
    st.attempts = 0;
    st.unsupportedUntilMs = 0;
    const proofs = new ProofExchange({
      channel: c,
      identity: this.opts.identity,
      isWorkloadOnNode: this.opts.isWorkloadOnNode,
      clock: this.clock,
      maxEntryTtlMs: this.opts.maxEntryTtlMs,
      requestPool: MAX_REQUESTS_PER_FRAME / 2,
      onPairRequested: (r) => {
        this.counters.pairsReceived++;
        st.lastUsedMs = this.clock.now();
        this.opts.onPairRequested(r);
      },
      ...(this.opts.auditPacer ? { auditPacer: this.opts.auditPacer } : {}),
      pairBudgetMs: this.opts.timeoutMs ?? 5000,
      onEvent: (e: ProofEvent) => this.event({ ...e, peerNode: c.peerNode, channel: c.id }),
      onChange: () => this.notify(c.peerNode),
    });
    st.proofs = proofs;
    c.start((m: ChannelMessage) => proofs.handle(m));
    c.onClose((reason) => {
      // Pair messages of this channel waiting for the audit queue stop waiting (nothing written).
      proofs.close();
      if (st.channel === c) {
        st.channel = undefined;
        st.proofs = undefined;
        // Closed on purpose by either end (idle, evicted): the next pair dials again, nobody re-dials now.
        if (reason !== 'duplicate-channel' && !c.left) this.scheduleReconnect(c.peerNode);
        // Refused by a peer at its cap: its pairs go per-pair until the retry time, as with a
        // peer that has no channel listener.
        if (reason === 'peer-at-capacity')
          st.unsupportedUntilMs = this.clock.now() + (this.opts.unsupportedRetryMs ?? 60_000);
      }
      this.logger.info(
        { event: 'channel_closed', node: c.peerNode, channel: c.id, reason },
        'node channel closed',
      );
      this.notify(c.peerNode);
    });
    proofs.start(this.opts.proofsFor?.(c.peerNode) ?? []);
    this.logger.info(
      { event: 'channel_open', node: c.peerNode, channel: c.id, role: c.role },
      'node channel open',
    );
    this.notify(c.peerNode);
    return c;
  }

  private scheduleReconnect(node: string): void {
    const st = this.peer(node);
    if (this.closed || !st.wanted || st.retryTimer) return;
    const delay = backoffMs(
      st.attempts++,
      this.opts.reconnectBaseMs ?? 200,
      this.opts.reconnectMaxMs ?? 30_000,
    );
    st.retryTimer = this.clock.setTimeout(() => {
      st.retryTimer = undefined;
      if (this.closed || (st.channel && !st.channel.closed)) return;
      this.ensureChannel(node).catch(() => this.scheduleReconnect(node));
    }, delay);
  }

  private event(e: ChannelEvent): void {
    this.logger.info(
      { event: 'channel_refused', reason: e.reason, node: e.peerNode, channel: e.channel, stage: e.stage },
      e.message,
    );
    // A pair this node refused because its audit queue is behind is counted in the pacer's episode
    // record instead (audit-pacing.ts: a record each would add to the overflow that refused it).
    // A peer's audit-busy answer to our pair message is recorded here: it is the peer's queue.
    if (e.stage === 'pair' && e.localId !== undefined && isPacedRefusal(e.reason)) return;
    // At most a window's share one each per peer node; the rest in one summary (event-audit.ts).
    this.eventAudit?.record(e.peerNode ?? UNKNOWN_NODE, e.stage, {
      type: 'handshake-failed',
      outcome: 'failure',
      reason: e.reason,
      ...(e.localId ? { localId: e.localId } : {}),
      ...(e.remoteId ? { remoteId: e.remoteId } : {}),
      ...(e.peerNode ? { node: e.peerNode } : {}),
      details: { channel: e.channel, stage: `channel-${e.stage}`, message: e.message },
    });
  }
}

/** SNI for a channel: the peer node's name (a DNS name; the server has one context, its node SVID). */
function sniName(node: string): string {
  return /^[A-Za-z0-9.-]+$/.test(node) && !/^[0-9.]+$/.test(node)
    ? node
    : `node-${randomBytes(4).toString('hex')}`;
}

function reasonOf(err: unknown): string {
  return err instanceof HandshakeError ? err.reason : 'internal-error';
}
