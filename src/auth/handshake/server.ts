import { createServer, type Server, type Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { silentLogger } from '../../log.js';
import { X509SvidVerifier } from '../../spiffe/index.js';
import { systemClock, type Clock } from '../../time.js';
import {
  anonymousSecureContext,
  SecureContextCache,
  sniHashFromServerName,
  sniHashOf,
} from '../../tls/index.js';
import type { WireguardKeyAgreement } from '../../wireguard/index.js';
import type { ResponderAuditPacer } from '../audit-pacing.js';
import { HandshakeError } from './errors.js';
import { MAX_FRAME_BYTES } from './frame.js';
import { rateLimitKey, TokenBucketLimiter } from './rate-limit.js';
import { ServerConnection, type ConnectionHost, type SelectedIdentity } from './server-connection.js';
import {
  ServerCounters,
  serverFailureChannel,
  serverSuccessChannel,
  type HandshakeServerStats,
} from './stats.js';
import type { HandshakeFailureEvent, HandshakeIdentity, ServerAuthResult } from './types.js';

export interface HandshakeServerLimits {
  /** Budget for TLS + hello + entry write, from accept. */
  handshakeTimeoutMs: number;
  /** Open connections at most; more are closed at once (too-many-connections). */
  maxConnections: number;
  /** Token bucket per remote address: refill rate (rate-limited when empty). */
  perPeerRatePerSec: number;
  /** Token bucket per remote address: size. */
  perPeerBurst: number;
  /** Largest frame accepted (<= 16 KiB). */
  maxFrameBytes: number;
  /**
   * How long a handshake asking for a workload of this node whose SVID is not held yet waits for
   * the identity source to deliver it (0 = refuse at once). Needs `identity.subscribe`; at most
   * half of handshakeTimeoutMs.
   */
  svidWaitMs: number;
  /** Remote addresses whose buckets are remembered (LRU). */
  maxTrackedPeers: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<HandshakeServerLimits> = Object.freeze({
  handshakeTimeoutMs: 5000,
  maxConnections: 256,
  perPeerRatePerSec: 50,
  perPeerBurst: 100,
  maxFrameBytes: MAX_FRAME_BYTES,
  maxTrackedPeers: 4096,
  svidWaitMs: 1000,
});

export interface HandshakeServerOptions {
  identity: HandshakeIdentity;
  /** This node's name (the clients' hello must address it). */
  nodeName: string;
  /** SPIFFE IDs of the workloads on this node: the identities a client may ask for. */
  localIdentities: () => Iterable<string>;
  /** Node that a TCP source address belongs to (inventory). */
  nodeForAddress: (remoteAddress: string) => string | undefined;
  /** Whether the inventory places the workload on the node. */
  isWorkloadOnNode: (spiffeId: string, node: string) => boolean;
  /**
   * This node's WireGuard key: its public half is sent in the result, and the private half proves
   * possession to the client and verifies the client's proof (wireguard-proof.ts).
   */
  wireguard?: WireguardKeyAgreement;
  /**
   * The key the inventory holds for a node; when it returns one, the client's hello must carry it
   * and prove possession of its private half.
   */
  expectedPeerWireguardKey?: (node: string) => string | undefined;
  /** Cap on an entry's lifetime. */
  maxEntryTtlMs: number;
  /** Write the reverse entry. Throwing (or rejecting) makes the result ok:false, entry-write-failed. */
  onAuthenticated: (r: ServerAuthResult) => void | Promise<void>;
  /**
   * Paces the reverse entries by this node's audit queue (the ResponderAuditPacer shared with the
   * node channels): a verified client's entry waits while the queue is above its high-water mark,
   * for at most what is left of handshakeTimeoutMs (less a tenth of it, to send the refusal in
   * time), and is refused with `audit-busy` (nothing written) when the queue has not drained by then.
   */
  auditPacer?: Pick<ResponderAuditPacer, 'admit'>;
  /** Every refused connection and failed handshake (audit, metrics). Must not throw (it is caught). */
  onFailure?: (f: HandshakeFailureEvent) => void;
  limits?: Partial<HandshakeServerLimits>;
  /**
   * Verifies the clients' chains, remembering chains already verified under the same bundle
   * (src/spiffe/verify-cache.ts). Default: a verifier of this server's own.
   */
  verifier?: X509SvidVerifier;
  logger?: Logger;
  now?: () => number;
  /** Timers (the SVID wait); default the system clock. */
  clock?: Clock;
}

/** Reasons that can come in floods: logged at most once per second each, with a count. */
const FLOOD_REASONS = new Set(['rate-limited', 'too-many-connections', 'audit-busy']);

/**
 * The server half of the meshauth handshake: accepts TCP, enforces connection and per-peer rate
 * limits before any TLS work, runs one ServerConnection per socket, keeps counters.
 */
export class HandshakeServer {
  private readonly limits: HandshakeServerLimits;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly clock: Clock;
  private readonly contexts = new SecureContextCache();
  private readonly anonymousContext: SecureContext = anonymousSecureContext();
  private readonly limiter: TokenBucketLimiter;
  private readonly counters = new ServerCounters();
  private readonly connections = new Set<ServerConnection>();
  private readonly hashes = new Map<string, string>();
  private readonly floodLog = new Map<string, { lastMs: number; suppressed: number }>();
  private readonly host: ConnectionHost;
  private server: Server | undefined;
  private closing: Promise<void> | undefined;
  private onDrained: (() => void) | undefined;

  constructor(private readonly opts: HandshakeServerOptions) {
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...(opts.limits ?? {}) };
    validateLimits(this.limits);
    if (!(opts.maxEntryTtlMs > 0)) throw new RangeError('handshake server: maxEntryTtlMs must be > 0');
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'handshake-server' });
    this.now = opts.now ?? systemClock.now;
    this.clock = opts.clock ?? systemClock;
    this.limiter = new TokenBucketLimiter({
      ratePerSec: this.limits.perPeerRatePerSec,
      burst: this.limits.perPeerBurst,
      maxKeys: this.limits.maxTrackedPeers,
    });
    this.host = this.makeHost();
  }

  /** Start listening; resolves with the bound port (pass port 0 for any). */
  listen(addr: { host: string; port: number }): Promise<{ port: number }> {
    if (this.closing)
      return Promise.reject(new HandshakeError('aborted', 'listen: handshake server is closed'));
    if (this.server) return Promise.reject(new Error('listen: handshake server is already listening'));
    const server = createServer({ noDelay: true }, (socket) => this.onConnection(socket));
    this.server = server;
    server.on('error', (err) =>
      this.logger.error({ event: 'handshake_server_error', err }, 'handshake server error'),
    );
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server = undefined;
        reject(
          new Error(`listen: handshake server on ${addr.host}:${addr.port}: ${err.message}`, { cause: err }),
        );
      };
      server.once('error', onError);
      server.listen({ host: addr.host, port: addr.port }, () => {
        server.off('error', onError);
        const address = server.address();
        const port = typeof address === 'object' && address ? address.port : addr.port;
        this.logger.info(
          { event: 'handshake_server_listening', host: addr.host, port },
          'handshake server listening',
        );
        resolve({ port });
      });
    });
  }

  /** Counters: accepted, active, succeeded, failed by reason. */
  stats(): HandshakeServerStats {
    return this.counters.snapshot();
  }

  /** Stop listening and close every open connection. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        const server = this.server;
        const closed = server
          ? new Promise<void>((resolve) => server.close(() => resolve()))
          : Promise.resolve();
        const drained =
          this.connections.size === 0
            ? Promise.resolve()
            : new Promise<void>((resolve) => (this.onDrained = resolve));
        for (const c of [...this.connections]) c.destroy();
        await Promise.all([closed, drained]);
        this.contexts.clear();
      })();
    }
    return this.closing;
  }

  /**
   * The token bucket a source address takes from: a node's own address (the inventory's,
   * nodeForAddress) its own, any other source rateLimitKey's (IPv6: its /64, so that one host cannot
   * mint fresh buckets from its interface identifiers). The nodes of an IPv6 cluster commonly share
   * one /64 (one subnet's prefix, RFC 4291 §2.5.1): keyed by it, they would share one bucket, and any
   * host of that subnet could empty it for all of them.
   */
  private rateKey(address: string): string {
    let node: string | undefined;
    try {
      node = this.opts.nodeForAddress(address);
    } catch (err) {
      this.logger.error({ event: 'handshake_node_for_address_threw', err }, 'nodeForAddress threw');
    }
    return node === undefined ? rateLimitKey(address) : rateLimitKey(address, 128);
  }

  private onConnection(socket: Socket): void {
    try {
      this.counters.accepted++;
      socket.on('error', () => {});
      if (this.closing) {
        socket.destroy();
        return;
      }
      const address = socket.remoteAddress ?? 'unknown';
      const peer = `${address}:${socket.remotePort ?? 0}`;
      if (this.connections.size >= this.limits.maxConnections) {
        socket.destroy();
        this.recordFailure({
          reason: 'too-many-connections',
          message: `accept handshake: ${this.connections.size} connections open (limit ${this.limits.maxConnections})`,
          peer,
          peerAddress: address,
          stage: 'accept',
          durationMs: 0,
        });
        return;
      }
      if (!this.limiter.takeKey(this.rateKey(address), this.now())) {
        socket.destroy();
        this.recordFailure({
          reason: 'rate-limited',
          message: `accept handshake: ${address} exceeded ${this.limits.perPeerRatePerSec}/s (burst ${this.limits.perPeerBurst})`,
          peer,
          peerAddress: address,
          stage: 'accept',
          durationMs: 0,
        });
        return;
      }
      const conn = new ServerConnection(socket, this.host);
      this.connections.add(conn);
      this.counters.active++;
    } catch (err) {
      socket.destroy();
      this.logger.error({ event: 'handshake_accept_failed', err }, 'accept handshake: unexpected error');
    }
  }

  private makeHost(): ConnectionHost {
    const opts = this.opts;
    return {
      identity: opts.identity,
      nodeName: opts.nodeName,
      anonymousContext: this.anonymousContext,
      handshakeTimeoutMs: this.limits.handshakeTimeoutMs,
      maxFrameBytes: this.limits.maxFrameBytes,
      maxEntryTtlMs: opts.maxEntryTtlMs,
      logger: this.logger,
      verifier: opts.verifier ?? new X509SvidVerifier(),
      now: this.now,
      selectIdentity: (name) => this.selectIdentity(name),
      nodeForAddress: (a) => opts.nodeForAddress(a),
      isWorkloadOnNode: (id, node) => opts.isWorkloadOnNode(id, node),
      wireguard: () => opts.wireguard,
      expectedPeerWireguardKey: (node) => opts.expectedPeerWireguardKey?.(node),
      paceEntry: (pair, budgetMs, signal) => opts.auditPacer?.admit(pair, budgetMs, signal),
      onAuthenticated: (r) => opts.onAuthenticated(r),
      failed: (f) => this.recordFailure(f),
      succeeded: (r) => this.recordSuccess(r),
      released: (c) => {
        if (this.connections.delete(c)) this.counters.active--;
        if (this.connections.size === 0) this.onDrained?.();
      },
    };
  }

  private selectIdentity(serverName: string): SelectedIdentity | Promise<SelectedIdentity> {
    const hash = sniHashFromServerName(serverName);
    if (!hash) {
      throw new HandshakeError(
        'remote-identity-unavailable',
        `accept handshake: server name "${serverName.slice(0, 80)}" is not a meshauth name`,
      );
    }
    for (const id of this.opts.localIdentities()) {
      if (this.hashOf(id) !== hash) continue;
      const svid = this.opts.identity.svid(id);
      if (!svid) return this.awaitSvid(id);
      return { spiffeId: id, svid, context: this.contexts.get(svid) };
    }
    throw new HandshakeError(
      'remote-identity-unavailable',
      `accept handshake: no workload on this node has server name ${hash}`,
    );
  }

  /**
   * The SVID of a local workload that is not held yet: a pod the inventory already lists whose SVID
   * the identity source is still fetching (SPIRE issues it moments after the pod appears). Waits up
   * to svidWaitMs for an identity event that brings it, so the peer's first handshake succeeds
   * instead of failing and retrying after its backoff.
   */
  private awaitSvid(id: string): Promise<SelectedIdentity> {
    const unavailable = (waited: number): HandshakeError =>
      new HandshakeError(
        'remote-identity-unavailable',
        `accept handshake: no SVID held for ${id}${waited > 0 ? ` (waited ${waited} ms)` : ''}`,
        { details: { localId: id } },
      );
    const waitMs = Math.min(this.limits.svidWaitMs, this.limits.handshakeTimeoutMs / 2);
    const subscribe = this.opts.identity.subscribe?.bind(this.opts.identity);
    if (!subscribe || !(waitMs > 0)) return Promise.reject(unavailable(0));
    return new Promise<SelectedIdentity>((resolve, reject) => {
      let done = false;
      const finish = (): void => {
        done = true;
        timer.cancel();
        unsubscribe();
      };
      const check = (): void => {
        if (done) return;
        const svid = this.opts.identity.svid(id);
        if (!svid) return;
        finish();
        resolve({ spiffeId: id, svid, context: this.contexts.get(svid) });
      };
      const timer = this.clock.setTimeout(() => {
        if (done) return;
        finish();
        reject(unavailable(waitMs));
      }, waitMs);
      const unsubscribe = subscribe(() => check());
      check(); // delivered between the first look and the subscription
    });
  }

  private hashOf(spiffeId: string): string {
    let h = this.hashes.get(spiffeId);
    if (h === undefined) {
      if (this.hashes.size >= 65536) this.hashes.clear();
      h = sniHashOf(spiffeId);
      this.hashes.set(spiffeId, h);
    }
    return h;
  }

  private recordFailure(f: HandshakeFailureEvent): void {
    this.counters.fail(f.reason);
    if (serverFailureChannel.hasSubscribers) serverFailureChannel.publish(f);
    try {
      this.opts.onFailure?.(f);
    } catch (err) {
      this.logger.error({ event: 'handshake_on_failure_threw', err }, 'onFailure callback threw');
    }
    const fields = {
      event: 'handshake_failed',
      reason: f.reason,
      peer: f.peer,
      stage: f.stage,
      duration_ms: f.durationMs,
      local_id: f.localId,
      remote_id: f.remoteId,
      node: f.peerNode,
    };
    if (FLOOD_REASONS.has(f.reason)) {
      const nowMs = this.now();
      const s = this.floodLog.get(f.reason) ?? { lastMs: 0, suppressed: 0 };
      if (nowMs - s.lastMs < 1000) {
        s.suppressed++;
        this.floodLog.set(f.reason, s);
        return;
      }
      this.logger.warn({ ...fields, suppressed: s.suppressed }, f.message);
      this.floodLog.set(f.reason, { lastMs: nowMs, suppressed: 0 });
      return;
    }
    if (f.reason === 'aborted') this.logger.debug(fields, f.message);
    else this.logger.warn(fields, f.message);
  }

  private recordSuccess(r: ServerAuthResult): void {
    this.counters.succeeded++;
    if (serverSuccessChannel.hasSubscribers) serverSuccessChannel.publish(r);
    this.logger.info(
      {
        event: 'handshake_succeeded',
        local_id: r.localId,
        remote_id: r.remoteId,
        node: r.peerNode,
        peer: r.peerAddress,
        duration_ms: r.durationMs,
        expires_at: new Date(r.expiresAtMs).toISOString(),
      },
      'client authenticated; entry written',
    );
  }
}

function validateLimits(l: HandshakeServerLimits): void {
  const positive: (keyof HandshakeServerLimits)[] = [
    'handshakeTimeoutMs',
    'maxConnections',
    'perPeerRatePerSec',
    'perPeerBurst',
    'maxFrameBytes',
    'maxTrackedPeers',
  ];
  for (const k of positive) {
    if (!(typeof l[k] === 'number' && l[k] > 0))
      throw new RangeError(`handshake server: limits.${k} must be > 0`);
  }
  if (!(typeof l.svidWaitMs === 'number' && l.svidWaitMs >= 0))
    throw new RangeError('handshake server: limits.svidWaitMs must be >= 0');
  if (l.maxFrameBytes > MAX_FRAME_BYTES) {
    throw new RangeError(`handshake server: limits.maxFrameBytes must be <= ${MAX_FRAME_BYTES}`);
  }
}
