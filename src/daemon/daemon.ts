import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import {
  AuthCache,
  AuthGc,
  AuthManager,
  AuthReporter,
  entryWriteCheck,
  type AuthObserver,
  type MirrorRepairReason,
} from '../auth/index.js';
import { HandshakeClient, HandshakeServer } from '../auth/handshake/index.js';
import type { DaemonConfig } from '../config/index.js';
import { openStateAllocators, type IdAllocator } from '../identity/allocator.js';
import type { IdentityEvent, IdentitySource } from '../identity/source.js';
import {
  assertNodeListed,
  loadInventoryFile,
  watchInventoryFile,
  type Inventory,
} from '../inventory/index.js';
import {
  compileNodeState,
  loadPolicyFile,
  preauthPairs,
  type NodeState,
  type Policy,
} from '../policy/index.js';
import { createIdentitySource } from './identity.js';
import { DaemonResolver } from './resolver.js';
import { openDatapath, type DaemonDatapath } from './datapath.js';
import { openAudit, type DaemonAudit } from './audit.js';
import { startOperations, type DaemonOperations } from './operations.js';
import {
  readKeyFile,
  startWireguard,
  wireguardKeyAgreement,
  type WireguardKeyAgreement,
  type WireguardTunnel,
} from '../wireguard/index.js';

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
    },
  ) {}

  static async start(config: DaemonConfig, logger: Logger): Promise<Daemon> {
    const log = logger.child({ component: 'daemon' });
    mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });

    const inventory = { current: loadInventoryFile(config.inventory.file) };
    assertNodeListed(inventory.current, config.node, config.file ?? '(flags)');
    const policy = { current: loadPolicyFile(config.policy.file) };
    const allocators = openStateAllocators(config.stateDir);
    const compile = (): NodeState =>
      compileNodeState({
        nodeName: config.node,
        inventory: inventory.current,
        policy: policy.current,
        identities: allocators.identities,
        nodes: allocators.nodes,
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
    const datapath = await openDatapath(config, state.current, logger, {
      wireguardIfindex: wg?.ifindex ?? 0,
    });
    dpRef.current = datapath;
    const ops: { current: DaemonOperations | undefined } = { current: undefined };
    const cache = new AuthCache(datapath.auth, {
      onRepair: (reason: MirrorRepairReason) => {
        ops.current?.metrics.mirrorRepairs.inc({ reason });
        log.warn(
          { event: 'auth_mirror_repaired', reason },
          'auth mirror disagreed with the kernel map: repaired from the kernel',
        );
      },
    });
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
      localIdentities: () => state.current.localSpiffeIds,
      holdsSvid: (id) => identity.svid(id) !== undefined,
    });

    const observer: AuthObserver = {
      revoked: (trigger) => ops.current?.metrics.entriesRevoked.inc({ trigger }),
      signal: (outcome) => ops.current?.metrics.signalsReceived.inc({ outcome }),
      handshake: (result, reason, ms) => ops.current?.metrics.recordHandshake(result, reason, ms),
      entries: (n) => ops.current?.metrics.authEntries.set(n),
    };
    const reporter = new AuthReporter({
      audit: audit.sink,
      logger: logger.child({ component: 'auth' }),
      observer,
    });

    // The handshake proves possession of the node's WireGuard private key (wireguard-proof.ts).
    const wgKey: WireguardKeyAgreement | undefined = wg
      ? wireguardKeyAgreement(readKeyFile(wg.privateKeyFile))
      : undefined;
    const client = new HandshakeClient({
      identity,
      nodeName: config.node,
      maxEntryTtlMs: config.handshake.maxEntryTtlMs,
      timeoutMs: config.handshake.timeoutMs,
      ...(wgKey
        ? {
            wireguard: wgKey,
            expectedPeerWireguardKey: (node: string) => inventory.current.node(node)?.wireguardPublicKey,
          }
        : {}),
      logger,
    });
    const manager = new AuthManager({
      cache,
      resolver,
      authenticator: client,
      reporter,
      logger: logger.child({ component: 'auth' }),
      // Trust is re-checked at the moment of every write (client and server side).
      writeCheck: entryWriteCheck({
        holdsSvid: (id) => identity.svid(id) !== undefined,
        isLocalIdentity: (id) => inventory.current.isWorkloadOnNode(id, config.node),
        isWorkloadOnNode: (id, node) => inventory.current.isWorkloadOnNode(id, node),
      }),
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
      ...(wgKey
        ? {
            wireguard: wgKey,
            expectedPeerWireguardKey: (node: string) => inventory.current.node(node)?.wireguardPublicKey,
          }
        : {}),
      logger,
      onAuthenticated: (r) => {
        manager.onServerAuthenticated(r);
      },
      onFailure: (f) => reporter.serverFailed(f),
    });
    await server.listen({ host: config.handshake.listen, port: config.handshake.port });

    const gc = new AuthGc({
      cache,
      audit: audit.sink,
      logger: logger.child({ component: 'gc' }),
      describe: (k) => resolver.names(k),
      obsolete: (k) => resolver.obsoleteReason(k),
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
    });

    // Rotation, removal and bundle changes are an event stream; a bundle change revokes what
    // relied on a removed authority (AuthManager.onTrustBundlesChanged).
    manager.noteTrustBundles(identity.bundles());
    const unsubscribe = identity.subscribe((ev: IdentityEvent) => {
      manager.onIdentityEvent(ev);
      gc.onIdentityEvent(ev);
    });
    daemon.disposers.push(unsubscribe, unsubscribeLog);

    // Inventory reloads recompile the node's maps.
    const watcher = watchInventoryFile(inventory.current, config.inventory.file, { log: logger });
    daemon.disposers.push(() => watcher.close());
    const offChange = inventory.current.onChange(() => daemon.resync());
    daemon.disposers.push(offChange);

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

  /** Authenticates the policy-implied pairs this node initiates before their first packet. */
  private preauthenticate(): void {
    const { state, inventory, policy, manager } = this.parts;
    manager.preauthenticate(
      preauthPairs(state.current, {
        nodeName: this.config.node,
        inventory: inventory.current,
        policy: policy.current,
      }),
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
      });
      this.parts.datapath.sync(this.parts.state.current);
      this.parts.identity.setWanted(this.parts.state.current.localSpiffeIds);
      this.logger.info({ component: 'daemon', event: 'state_resynced' }, 'inventory changed: maps updated');
      // Entries of workloads that left (here or on the peer node) go now, not on the next GC tick.
      this.parts.gc.run();
      if (this.config.auth.preauthenticate) this.preauthenticate();
    } catch (err) {
      this.logger.error(
        { component: 'daemon', event: 'state_resync_failed', err },
        'inventory change not applied',
      );
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
