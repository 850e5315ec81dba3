import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import { AuthCache, AuthGc, AuthManager, type AuthObserver } from '../auth/index.js';
import { HandshakeClient, HandshakeServer } from '../auth/handshake/index.js';
import type { AuditSink } from '../audit/sink.js';
import type { DaemonConfig } from '../config/index.js';
import { AuthType, type AuthKey } from '../datapath/types.js';
import { openStateAllocators, type IdAllocator } from '../identity/allocator.js';
import type { IdentityEvent, IdentitySource } from '../identity/source.js';
import type { Inventory } from '../inventory/index.js';
import { compileNodeState, type NodeState, type Policy } from '../policy/index.js';
import { openSources, type DaemonSources } from './sources.js';
import { createIdentitySource } from './identity.js';
import { DaemonResolver } from './resolver.js';
import { openDatapath, type DaemonDatapath } from './datapath.js';
import { openAudit, type DaemonAudit } from './audit.js';
import { startOperations, type DaemonOperations } from './operations.js';
import { startWireguard, type WireguardTunnel } from '../wireguard/index.js';

/** How long start-up waits for the identity source's first complete state. */
const IDENTITY_READY_TIMEOUT_MS = 30_000;

/**
 * meshauthd: wires datapath, identity, handshake, auth manager, audit and API together.
 * close() stops user space only: BPF maps stay pinned and programs stay attached, so traffic keeps
 * being enforced with the entries already earned.
 */
export class Daemon {
  private closing: Promise<void> | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly disposers: Array<() => void | Promise<void>> = [];

  private constructor(
    readonly config: DaemonConfig,
    private readonly logger: Logger,
    private readonly parts: {
      inventory: { current: Inventory };
      policy: { current: Policy };
      allocators: { identities: IdAllocator; nodes: IdAllocator };
      state: { current: NodeState };
      datapath: DaemonDatapath;
      cache: AuthCache;
      identity: IdentitySource;
      audit: DaemonAudit;
      manager: AuthManager;
      server: HandshakeServer;
      gc: AuthGc;
      wg: WireguardTunnel | undefined;
      sources: DaemonSources;
    },
  ) {}

  static async start(config: DaemonConfig, logger: Logger): Promise<Daemon> {
    const log = logger.child({ component: 'daemon' });
    mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });

    // Inventory and policy from files or from the Kubernetes API (informers), same shape either way.
    const sources = await openSources(config, logger);
    const inventory = { current: sources.inventory };
    const policy = sources.policy;
    const allocators = openStateAllocators(config.stateDir);
    const compile = (): NodeState =>
      compileNodeState({
        nodeName: config.node,
        inventory: inventory.current,
        policy: policy.current,
        identities: allocators.identities,
        nodes: allocators.nodes,
        unresolvedPodCidrs: sources.unresolvedPodCidrs,
      });
    const state = { current: compile() };
    log.info(
      {
        event: 'config_loaded',
        node: config.node,
        workloads: state.current.localSpiffeIds.length,
        ipcache: state.current.ipcache.length,
        policy_entries: state.current.policy.length,
      },
      'inventory and policy loaded',
    );

    const audit = openAudit(config, logger);
    // WireGuard first: the datapath's strict mode needs the tunnel's ifindex.
    let wg: WireguardTunnel | undefined;
    const dpRef: { current: DaemonDatapath | undefined } = { current: undefined };
    if (config.wireguard.enabled) {
      wg = await startWireguard({
        config,
        inventory: inventory.current,
        nodeName: config.node,
        stateDir: config.stateDir,
        logger: logger.child({ component: 'wireguard' }),
        onIfindexChange: (ifindex) => {
          const dp = dpRef.current?.datapath;
          if (dp) dp.setSettings({ ...dp.settings(), wireguardIfindex: ifindex });
        },
      });
    }
    if (wg) sources.publishWireguardKey(wg.publicKey, config.wireguard.listenPort);
    const datapath = await openDatapath(config, state.current, logger, {
      wireguardIfindex: wg?.ifindex ?? 0,
    });
    dpRef.current = datapath;
    const cache = new AuthCache(datapath.auth);
    const restored = cache.restore();
    log.info(
      { event: 'entries_restored', count: restored },
      `restored ${restored} auth entries from the pinned map`,
    );

    const identity = await createIdentitySource(config, inventory.current, logger);
    // Logged from the start, so the first SVIDs and source states are visible too.
    const unsubscribeLog = identity.subscribe((ev) =>
      logIdentityEvent(logger.child({ component: 'identity' }), ev),
    );
    identity.setWanted(state.current.localSpiffeIds);
    await withTimeout(
      identity.ready(),
      IDENTITY_READY_TIMEOUT_MS,
      `identity source ${identity.kind} not ready`,
    );

    const resolver = new DaemonResolver({
      identities: allocators.identities,
      nodes: allocators.nodes,
      inventory: () => inventory.current,
      policy: () => policy.current,
      handshakePort: config.handshake.port,
    });

    const ops: { current: DaemonOperations | undefined } = { current: undefined };
    const observer: AuthObserver = {
      signal: (outcome) => ops.current?.metrics.signalsReceived.inc({ outcome }),
      handshake: (result, reason, ms) => ops.current?.metrics.recordHandshake(result, reason, ms),
      entries: (n) => ops.current?.metrics.authEntries.set(n),
    };

    const client = new HandshakeClient({
      identity,
      nodeName: config.node,
      maxEntryTtlMs: config.handshake.maxEntryTtlMs,
      timeoutMs: config.handshake.timeoutMs,
      ...(wg
        ? {
            wireguardPublicKey: () => wg.publicKey,
            expectedPeerWireguardKey: (node: string) => inventory.current.node(node)?.wireguardPublicKey,
          }
        : {}),
      logger,
    });
    const manager = new AuthManager({
      cache,
      resolver,
      authenticator: client,
      audit: audit.sink,
      logger: logger.child({ component: 'auth' }),
      observer,
      options: {
        maxConcurrent: config.auth.maxConcurrent,
        queueSize: config.auth.queueSize,
        retryBaseMs: config.auth.retryBaseMs,
        retryMaxMs: config.auth.retryMaxMs,
        reauthAt: config.auth.reauthAt,
      },
    });
    const server = new HandshakeServer({
      identity,
      nodeName: config.node,
      localIdentities: () => state.current.localSpiffeIds,
      nodeForAddress: (addr) => inventory.current.nodeForAddress(addr)?.name,
      isWorkloadOnNode: (id, node) => inventory.current.isWorkloadOnNode(id, node),
      maxEntryTtlMs: config.handshake.maxEntryTtlMs,
      limits: {
        handshakeTimeoutMs: config.handshake.timeoutMs,
        maxConnections: config.handshake.maxConnections,
        perPeerRatePerSec: config.handshake.perPeerRate,
        perPeerBurst: config.handshake.perPeerBurst,
      },
      ...(wg
        ? {
            wireguardPublicKey: () => wg.publicKey,
            expectedPeerWireguardKey: (node: string) => inventory.current.node(node)?.wireguardPublicKey,
          }
        : {}),
      logger,
      onAuthenticated: (r) => {
        manager.onServerAuthenticated(r);
        observer.handshake?.('success', 'ok', r.durationMs);
        logger.info(
          {
            component: 'auth',
            event: 'server_auth_succeeded',
            local_id: r.localId,
            remote_id: r.remoteId,
            node: r.peerNode,
            duration_ms: r.durationMs,
            expires_at: new Date(r.expiresAtMs).toISOString(),
          },
          'peer authenticated us for a pair; entry written',
        );
      },
      onFailure: (f) => {
        observer.handshake?.('failure', f.reason, f.durationMs);
        audit.sink.record({
          type: 'handshake-failed',
          outcome: 'failure',
          reason: f.reason,
          localId: f.localId,
          remoteId: f.remoteId,
          node: f.peerNode,
          direction: 'server',
          details: { message: f.message, peer: f.peer, stage: f.stage, durationMs: f.durationMs },
        });
      },
    });
    await server.listen({ host: config.handshake.listen, port: config.handshake.port });

    const gc = new AuthGc({
      cache,
      audit: audit.sink,
      logger: logger.child({ component: 'gc' }),
      describe: (k) => describeKey(resolver, k),
      obsolete: (k) =>
        obsoleteReason(k, resolver, state.current, inventory.current, policy.current, identity),
    });

    const daemon = new Daemon(config, logger, {
      inventory,
      policy,
      allocators,
      state,
      datapath,
      cache,
      identity,
      audit,
      manager,
      server,
      gc,
      wg,
      sources,
    });

    // Rotation is an event stream.
    const unsubscribe = identity.subscribe((ev: IdentityEvent) => daemon.onIdentityEvent(ev, audit.sink));
    daemon.disposers.push(unsubscribe, unsubscribeLog);

    // Inventory and policy changes recompile the node's maps (written entry by entry).
    daemon.disposers.push(() => sources.close());
    const offChange = inventory.current.onChange(() => daemon.resync());
    daemon.disposers.push(offChange);
    daemon.disposers.push(sources.onPolicyChange(() => daemon.resync()));

    manager.start(datapath.signals);
    if (config.auth.preauthenticate) daemon.preauthenticate();
    daemon.every(config.auth.gcIntervalMs, () => {
      gc.run();
      if (config.auth.reauthAt > 0) manager.scheduleExpiryReauth();
    });

    ops.current = await startOperations({
      config,
      logger,
      audit,
      datapath,
      cache,
      resolver,
      identity,
      manager,
      server,
      inventory: () => inventory.current,
      sources,
    });
    daemon.disposers.push(() => ops.current?.close());

    log.info(
      {
        event: 'daemon_ready',
        node: config.node,
        handshake: `${config.handshake.listen}:${config.handshake.port}`,
        identity_source: identity.kind,
      },
      'meshauthd ready',
    );
    return daemon;
  }

  /**
   * Queues a handshake for every pair the policy requires between a workload here and one on
   * another node, before any packet. Of the two nodes, the one whose name sorts first initiates
   * (the other writes its entry as the handshake server), so each pair costs one handshake.
   */
  private preauthenticate(): void {
    const { state, inventory, policy, allocators, manager } = this.parts;
    const keys: AuthKey[] = [];
    for (const local of state.current.localSpiffeIds) {
      for (const w of inventory.current.workloads()) {
        if (w.node === this.config.node || this.config.node > w.node) continue;
        if (!policy.current.requires(local, w.spiffeId)) continue;
        const remoteNode = allocators.nodes.lookup(w.node);
        if (remoteNode === undefined) continue;
        keys.push({
          localId: allocators.identities.idFor(local),
          remoteId: allocators.identities.idFor(w.spiffeId),
          remoteNode,
          authType: AuthType.SpiffeMtls,
        });
      }
    }
    const n = manager.preauthenticate(keys);
    this.logger.info(
      { component: 'auth', event: 'preauth_queued', pairs: keys.length, queued: n },
      'authenticating policy-implied pairs before their first packet',
    );
  }

  /** Recompiles ipcache and policy after an inventory change and updates the wanted identities. */
  private resync(): void {
    try {
      this.parts.state.current = compileNodeState({
        nodeName: this.config.node,
        inventory: this.parts.inventory.current,
        policy: this.parts.policy.current,
        identities: this.parts.allocators.identities,
        nodes: this.parts.allocators.nodes,
        unresolvedPodCidrs: this.parts.sources.unresolvedPodCidrs,
      });
      this.parts.datapath.sync(this.parts.state.current);
      this.parts.identity.setWanted(this.parts.state.current.localSpiffeIds);
      this.logger.debug(
        { component: 'daemon', event: 'state_resynced' },
        'inventory or policy changed: maps updated',
      );
      if (this.config.auth.preauthenticate) this.preauthenticate();
    } catch (err) {
      this.logger.error(
        { component: 'daemon', event: 'state_resync_failed', err },
        'inventory change not applied',
      );
    }
  }

  private onIdentityEvent(ev: IdentityEvent, audit: AuditSink): void {
    const log = this.logger.child({ component: 'identity' });
    switch (ev.type) {
      case 'svid-updated': {
        if (ev.previousNotAfter) {
          audit.record({
            type: 'svid-rotated',
            outcome: 'info',
            localId: ev.spiffeId,
            details: {
              notAfterMs: ev.svid.notAfter.getTime(),
              previousNotAfterMs: ev.previousNotAfter.getTime(),
              serial: ev.svid.leaf.serialNumber,
            },
          });
          const n = this.parts.manager.onLocalSvidRotated(ev.spiffeId);
          log.info(
            { event: 'reauth_scheduled', local_id: ev.spiffeId, pairs: n },
            're-authenticating after rotation',
          );
        }
        return;
      }
      case 'svid-removed':
        this.parts.gc.run();
        return;
      default:
        return;
    }
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(() => {
      try {
        fn();
      } catch (err) {
        this.logger.error(
          { component: 'daemon', event: 'periodic_task_failed', err },
          'periodic task failed',
        );
      }
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  /** Graceful: stop accepting, finish in-flight work, flush audit. Pins and attachments stay. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const log = this.logger.child({ component: 'daemon' });
      log.info({ event: 'daemon_stopping' }, 'shutting down (BPF maps stay pinned; enforcement continues)');
      for (const t of this.timers) clearInterval(t);
      await this.parts.server.close();
      await this.parts.manager.close();
      for (const d of this.disposers.reverse()) {
        try {
          await d();
        } catch (err) {
          log.warn({ event: 'shutdown_step_failed', err }, 'shutdown step failed');
        }
      }
      await this.parts.identity.close();
      this.parts.datapath.close();
      // The tunnel stays up: pod traffic keeps flowing while the daemon is away.
      await this.parts.wg?.close();
      await this.parts.audit.close();
      log.info({ event: 'daemon_stopped' }, 'meshauthd stopped');
    })();
    return this.closing;
  }
}

function describeKey(
  resolver: DaemonResolver,
  k: AuthKey,
): { localId?: string; remoteId?: string; node?: string } {
  return {
    localId: resolver.spiffeIdOf(k.localId),
    remoteId: resolver.spiffeIdOf(k.remoteId),
    node: resolver.nodeNameOf(k.remoteNode),
  };
}

/** Why a live entry must go, or undefined to keep it. */
function obsoleteReason(
  k: AuthKey,
  resolver: DaemonResolver,
  state: NodeState,
  inventory: Inventory,
  policy: Policy,
  identity: Pick<IdentitySource, 'svid'>,
): string | undefined {
  const local = resolver.spiffeIdOf(k.localId);
  const remote = resolver.spiffeIdOf(k.remoteId);
  const node = resolver.nodeNameOf(k.remoteNode);
  if (!local || !remote || !node) return 'unknown-handle';
  if (!state.localSpiffeIds.includes(local)) return 'identity-removed';
  if (!inventory.isWorkloadOnNode(remote, node)) return 'workload-moved';
  if (!policy.requires(local, remote)) return 'policy-removed';
  // The identity source no longer holds an SVID for our side (entry deleted, expired, denied).
  if (!identity.svid(local)) return 'svid-removed';
  return undefined;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new Error(`${what} after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    if (t) clearTimeout(t);
  }
}

function logIdentityEvent(log: Logger, ev: IdentityEvent): void {
  switch (ev.type) {
    case 'svid-updated':
      log.info(
        {
          event: 'svid_updated',
          local_id: ev.spiffeId,
          serial: ev.svid.leaf.serialNumber,
          not_after: ev.svid.notAfter.toISOString(),
          rotated: ev.previousNotAfter !== undefined,
        },
        ev.previousNotAfter ? 'SVID renewed' : 'SVID issued',
      );
      return;
    case 'svid-removed':
      log.warn(
        { event: 'svid_removed', local_id: ev.spiffeId, reason: ev.reason },
        'SVID no longer available',
      );
      return;
    case 'bundles-updated':
      log.info({ event: 'bundles_updated', trust_domains: [...ev.bundles.keys()] }, 'trust bundles updated');
      return;
    case 'source-state':
      log.info(
        { event: 'identity_source_state', state: ev.state, detail: ev.detail },
        'identity source state',
      );
      return;
  }
}
