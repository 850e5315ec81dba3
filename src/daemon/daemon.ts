import type { Logger } from 'pino';
import {
  AuthCache,
  AuthGc,
  AuthManager,
  ResponderAuditPacer,
  AuthReporter,
  entryWriteCheck,
  type AuthObserver,
  type MirrorRepairReason,
  removeUnauditedEntries,
} from '../auth/index.js';
import { HandshakeClient, HandshakeServer } from '../auth/handshake/index.js';
import { NodeChannels, nodeSpiffeIdFor } from '../auth/channel/index.js';
import type { DaemonConfig } from '../config/index.js';
import { openStateAllocators, type IdentityEvent } from '../identity/index.js';
import { compileNodeState, preauthPairs, type NodeState } from '../policy/index.js';
import { openSources } from './sources.js';
import { createIdentitySource } from './identity.js';
import { DaemonResolver } from './resolver.js';
import { openDatapath, type DaemonDatapath } from './datapath.js';
import { entryTrail, openAudit } from './audit.js';
import { PolicyTrail } from './policy-trail.js';
import { startOperations, type DaemonOperations } from './operations.js';
import {
  readKeyFile,
  startWireguard,
  wireguardKeyAgreement,
  type WireguardTunnel,
} from '../wireguard/index.js';
import { systemClock, wallClock } from '../time.js';
import { RawSocketSender, SynReplay, synReplayBlocker } from '../datapath/index.js';
import { Closers } from './closers.js';
import { preflight } from './preflight.js';
import { makeDirsSync } from '../make-dirs.js';

/** How long start-up waits for the identity source's first complete state. */
const IDENTITY_READY_TIMEOUT_MS = 30_000;

/**
 * meshauthd: wires datapath, identity, handshake, auth manager, audit and API together.
 * close() stops user space only: BPF maps stay pinned and programs stay attached, so traffic keeps
 * being enforced with the entries already earned.
 */
export class Daemon {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly config: DaemonConfig,
    private readonly logger: Logger,
    private readonly closers: Closers,
  ) {}

  /**
   * Checks the configuration against the node first (preflight.ts: files, attach points, listeners;
   * ConfigError), then opens and starts everything, in data-flow order. Each step that opens something registers
   * how to close it; when a later step fails, what was opened is closed again in reverse order
   * (closer errors are logged, the step's error is thrown) and the daemon leaves nothing running:
   * no listening socket, no open map or database fd, no watcher or timer. The datapath is put back
   * as this start found it: a first start detaches its programs and removes its pins, a restart
   * writes back the ipcache and policy entries the pinned maps held (the previous run's programs
   * keep enforcing them). A running WireGuard interface stays.
   */
  static async start(config: DaemonConfig, logger: Logger): Promise<Daemon> {
    const log = logger.child({ component: 'daemon' });
    const closers = new Closers(log);
    const start = { failed: false };
    try {
      await Daemon.open(config, logger, closers, start);
    } catch (err) {
      start.failed = true;
      // the error itself is reported once, by whoever called start
      log.error(
        { event: 'daemon_start_unwound', err_code: (err as { code?: string }).code, steps: closers.size },
        'start failed: closing what was opened',
      );
      await closers.closeAll();
      throw err;
    }
    return new Daemon(config, logger, closers);
  }

  private static async open(
    config: DaemonConfig,
    logger: Logger,
    closers: Closers,
    start: { readonly failed: boolean },
  ): Promise<void> {
    const log = logger.child({ component: 'daemon' });
    // Configuration mistakes (files, attach points, ports) fail here, exit 2, before any pinned map
    // is written or program replaced: the enforcement a previous run left attached stays as it was.
    await preflight(config);
    makeDirsSync(config.stateDir, 0o700);

    // Inventory and policy from files or from the Kubernetes API (informers), same shape either way.
    const sources = await openSources(config, logger);
    closers.push('sources', () => sources.close());
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
    closers.push('audit', () => audit.close());
    // The policy in force is a decision record (`policy-changed`, never dropped): the one taken at
    // start, then every change of it, heard before the maps are resynced (so the trail shows the
    // change ahead of the entries it removes). Subscribed now, so no change is missed while the
    // rest starts.
    const policyTrail = new PolicyTrail(
      audit.sink,
      config.policy.source === 'kubernetes'
        ? { kind: 'kubernetes' }
        : { kind: 'file', file: config.policy.file as string },
    );
    policyTrail.start(policy.current);
    closers.push(
      'policy-trail',
      sources.onPolicyChange(() => {
        policyTrail.changed(policy.current);
      }),
    );
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
      // The tunnel stays up: pod traffic keeps flowing while the daemon is away.
      const tunnel = wg;
      closers.push('wireguard', () => tunnel.close());
    }
    if (wg) sources.publishWireguardKey(wg.publicKey, config.wireguard.listenPort);
    const datapath = await openDatapath(config, state.current, logger, {
      wireguardIfindex: wg?.ifindex ?? 0,
    });
    closers.push('datapath', () => {
      // A failed start leaves the kernel as it found it (no pins or filters of its own, the
      // previous run's map entries); a graceful stop leaves pins and programs enforcing.
      if (start.failed) {
        try {
          datapath.unwindStart();
        } finally {
          datapath.close();
        }
      } else {
        datapath.close();
      }
    });
    dpRef.current = datapath;
    const ops: { current: DaemonOperations | undefined } = { current: undefined };
    const cache = new AuthCache(datapath.auth, {
      // The mirror holds as many entries as the kernel map can: a smaller mirror would push live
      // entries out, and every full comparison would adopt them again as repairs.
      maxEntries: config.datapath.maps.auth,
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
    closers.push('identity', () => identity.close());
    // In channel mode the daemon also holds its own node SVID (auth.channel.nodeId).
    const nodeSpiffeId = nodeSpiffeIdFor(
      config.auth.channel.nodeId.replaceAll('{trustDomain}', config.identity.devCa.trustDomain),
    );
    const ownNodeId = nodeSpiffeId(config.node);
    const wantedIdentities = (): string[] =>
      config.auth.mode === 'channel'
        ? [...state.current.localSpiffeIds, ownNodeId]
        : [...state.current.localSpiffeIds];
    identity.setWanted(wantedIdentities());
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

    // Restored entries whose entry-written event a crash lost are removed before any signal is read.
    const unaudited = removeUnauditedEntries({
      cache,
      names: (k) => resolver.names(k),
      trail: entryTrail(audit.store),
      audit: audit.sink,
      logger: log,
      maxEntryTtlMs: config.handshake.maxEntryTtlMs,
    });
    if (unaudited > 0) {
      log.warn({ event: 'entries_unaudited', count: unaudited }, `removed ${unaudited} unaudited entries`);
    }

    const observer: AuthObserver = {
      revoked: (trigger) => ops.current?.metrics.entriesRevoked.inc({ trigger }),
      signal: (outcome) => ops.current?.metrics.signalsReceived.inc({ outcome }),
      workDropped: (reason) => ops.current?.metrics.authWorkDropped.inc({ reason }),
      handshake: (result, reason, ms) => ops.current?.metrics.recordHandshake(result, reason, ms),
      entries: (n) => ops.current?.metrics.authEntries.set(n),
      channelAcceptRefused: (reason) => ops.current?.metrics.channelAcceptRefused.inc({ reason }),
    };
    const reporter = new AuthReporter({
      audit: audit.sink,
      logger: logger.child({ component: 'auth' }),
      observer,
    });
    // Its accept-refusal records are written when it closes: after the handshake server (closers run last-in first).
    closers.push('auth-reporter', () => reporter.close());

    // Entries written for pairs peers initiate (per-pair server and node channels) are paced by the
    // same audit queue marks as the handshakes this node starts (AuthManager, auditBackpressure).
    const auditBackpressure = {
      depth: () => audit.writer.queueDepth,
      highWater: Math.floor(audit.writer.maxQueue * 0.8),
      lowWater: Math.floor(audit.writer.maxQueue * 0.5),
    };
    const auditPacer = new ResponderAuditPacer({
      backpressure: auditBackpressure,
      audit: audit.sink,
      logger,
      onOutcome: (outcome, path) => ops.current?.metrics.responderAuditBackpressure.inc({ outcome, path }),
    });
    closers.push('auth-responder-pacer', () => auditPacer.close());

    // With WireGuard, both handshake halves prove possession of this node's private key and check
    // the peer's proof against the key the inventory holds for it (wireguard-proof.ts).
    const wireguardBinding = wg
      ? {
          wireguard: wireguardKeyAgreement(readKeyFile(wg.privateKeyFile)),
          expectedPeerWireguardKey: (node: string) => inventory.current.node(node)?.wireguardPublicKey,
        }
      : {};
    const client = new HandshakeClient({
      identity,
      nodeName: config.node,
      maxEntryTtlMs: config.handshake.maxEntryTtlMs,
      timeoutMs: config.handshake.timeoutMs,
      ...wireguardBinding,
      logger,
    });
    // auth.mode channel: pairs are authenticated from identity proofs over one TLS channel per
    // node pair (src/auth/channel); nodes that do not speak it get the per-pair handshake.
    const channels =
      config.auth.mode === 'channel'
        ? new NodeChannels({
            nodeName: config.node,
            nodeSvid: () => identity.svid(ownNodeId),
            nodeSpiffeId,
            identity,
            channelEndpoint: (node) => {
              const n = inventory.current.node(node);
              return n ? { address: n.address, port: config.auth.channel.port } : undefined;
            },
            nodeForAddress: (addr) => inventory.current.nodeForAddress(addr)?.name,
            isWorkloadOnNode: (id, node) => inventory.current.isWorkloadOnNode(id, node),
            proofsFor: (node) => {
              const theirs = inventory.current.spiffeIdsOnNode(node);
              return state.current.localSpiffeIds.filter((local) =>
                theirs.some((remote) => policy.current.requires(local, remote)),
              );
            },
            ...wireguardBinding,
            onPairRequested: (r) => {
              manager.onServerAuthenticated(r);
            },
            fallback: client,
            maxEntryTtlMs: config.handshake.maxEntryTtlMs,
            timeoutMs: config.handshake.timeoutMs,
            maxChannels: config.auth.channel.maxChannels,
            onEvicted: () => ops.current?.metrics.channelEvictions.inc(),
            // Counted (meshauth_channel_accept_refused_total) and audited per reason and window.
            onAcceptRefused: (f) => reporter.channelAcceptRefused(f),
            auditPacer,
            audit: audit.sink,
            logger,
          })
        : undefined;

    const gc = new AuthGc({
      cache,
      audit: audit.sink,
      logger: logger.child({ component: 'gc' }),
      describe: (k) => resolver.names(k),
      obsolete: (k) => resolver.obsoleteReason(k),
    });

    // datapath.synReplay: the raw sockets are opened in the daemon's network namespace (the node's).
    // Without CAP_NET_RAW the daemon runs on without replay (the SYN retransmission still works).
    let rawSender: RawSocketSender | undefined;
    const blocker = synReplayBlocker(config.datapath.attach);
    if (config.datapath.synReplay && blocker) {
      log.warn({ event: 'syn_replay_unavailable', reason: blocker }, `datapath.synReplay off: ${blocker}`);
    } else if (config.datapath.synReplay) {
      try {
        rawSender = new RawSocketSender().open();
      } catch (err) {
        log.warn(
          { event: 'syn_replay_unavailable', err },
          'datapath.synReplay: cannot open a raw socket (CAP_NET_RAW?); cold pairs wait for the SYN retransmission',
        );
      }
    }
    const synReplay = rawSender
      ? new SynReplay({
          sender: rawSender,
          clock: systemClock,
          onReplayed: (key) => {
            ops.current?.metrics.synReplayed.inc();
            log.info({ event: 'syn_replayed', pair: resolver.names(key) }, 'SYN replayed');
          },
          onNotReplayed: (reason, err) => {
            ops.current?.metrics.synNotReplayed.inc({ reason });
            if (err) log.warn({ event: 'syn_replay_failed', err }, 'SYN replay: send failed');
          },
        })
      : undefined;
    if (synReplay) closers.push('syn-replay', () => synReplay.close());
    const manager = new AuthManager({
      ...(synReplay ? { synReplay } : {}),
      cache,
      resolver,
      authenticator: channels ?? client,
      reporter,
      logger: logger.child({ component: 'auth' }),
      // Trust is re-checked at the moment of every write (client and server side).
      writeCheck: entryWriteCheck({
        holdsSvid: (id) => identity.svid(id) !== undefined,
        isLocalIdentity: (id) => inventory.current.isWorkloadOnNode(id, config.node),
        isWorkloadOnNode: (id, node) => inventory.current.isWorkloadOnNode(id, node),
        requiresPair: (local, remote) => policy.current.requires(local, remote),
      }),
      // No entry is written faster than its audit record can be saved: new handshakes wait while the
      // writer's queue is above 80% of its bound, until it is back under 50%.
      auditBackpressure,
      // GC pressure: a full auth map first drops what expired or became obsolete.
      onMapFull: () => {
        const r = gc.run();
        log.warn(
          { event: 'auth_map_full', entries: cache.size, freed: r.expired + r.removed },
          'auth map full: GC pass before retrying the write',
        );
        return r.expired + r.removed;
      },
      options: {
        maxConcurrent: config.auth.maxConcurrent,
        queueSize: config.auth.queueSize,
        retryBaseMs: config.auth.retryBaseMs,
        retryMaxMs: config.auth.retryMaxMs,
        reauthAt: config.auth.reauthAt,
      },
    });
    closers.push('auth-manager', () => manager.close());
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
      ...wireguardBinding,
      auditPacer,
      logger,
      onAuthenticated: (r) => {
        manager.onServerAuthenticated(r);
      },
      onFailure: (f) => reporter.serverFailed(f),
    });
    closers.push('handshake-server', () => server.close());
    await server.listen({ host: config.handshake.listen, port: config.handshake.port });
    if (channels) {
      closers.push('node-channels', () => channels.close());
      await channels.listen({ host: config.handshake.listen, port: config.auth.channel.port });
    }

    // Rotation, removal and bundle changes are an event stream; a bundle change revokes what
    // relied on a removed authority (AuthManager.onTrustBundlesChanged).
    manager.noteTrustBundles(identity.bundles());
    const unsubscribe = identity.subscribe((ev: IdentityEvent) => {
      manager.onIdentityEvent(ev);
      gc.onIdentityEvent(ev);
      if (channels) {
        if (ev.type === 'bundles-updated') channels.onTrustBundlesChanged(ev.bundles);
        else if (ev.type === 'svid-updated' || ev.type === 'svid-removed')
          channels.onLocalSvidChanged(ev.spiffeId);
      }
    });
    closers.push('identity-events', unsubscribe);

    /** Authenticates the policy-implied pairs this node initiates before their first packet. */
    const preauthenticate = (): void => {
      if (!config.auth.preauthenticate) return;
      manager.preauthenticate(
        preauthPairs(state.current, {
          nodeName: config.node,
          inventory: inventory.current,
          policy: policy.current,
        }),
      );
    };
    /**
     * Recompiles ipcache and policy after an inventory or policy change and updates the wanted
     * identities. Logs `state_resync_failed` and throws when the maps could not be brought in line,
     * so a file reload reports the change as taken but failed (`*_reload_failed`, `applied: true`);
     * a later successful resync tells the followed files the maps match them again.
     */
    const resync = (): void => {
      try {
        state.current = compile();
        datapath.sync(state.current);
        identity.setWanted(wantedIdentities());
        log.debug({ event: 'state_resynced' }, 'inventory or policy changed: maps updated');
        // Entries of workloads that left (here or on the peer node) go now, not on the next GC tick.
        gc.run();
        preauthenticate();
      } catch (err) {
        log.error(
          { event: 'state_resync_failed', err },
          'inventory or policy change not applied to the maps',
        );
        throw err;
      }
      sources.acted();
    };

    // Inventory and policy changes recompile the node's maps (written entry by entry).
    closers.push('inventory-follow', inventory.current.onChange(resync));
    closers.push('policy-follow', sources.onPolicyChange(resync));

    manager.start(datapath.signals);
    preauthenticate();
    const gcTimer = systemClock.setInterval(() => {
      // Pins removed from bpffs under us are made again from our fds (a restart would otherwise
      // start from empty maps); a pin that cannot be made is an error, logged every tick.
      try {
        const repinned = datapath.datapath.repinMissing();
        if (repinned.length > 0) {
          log.warn(
            { event: 'pins_restored', pin_dir: config.bpf.pinDir, maps: repinned },
            'pinned maps were removed from bpffs: pinned again',
          );
        }
      } catch (err) {
        log.error(
          { event: 'pins_lost', pin_dir: config.bpf.pinDir, err },
          'pinned maps were removed from bpffs and cannot be pinned again: a restart starts from empty maps',
        );
      }
      try {
        gc.run();
        if (config.auth.reauthAt > 0) manager.scheduleExpiryReauth();
      } catch (err) {
        log.error({ event: 'periodic_task_failed', err }, 'periodic task failed');
      }
    }, config.auth.gcIntervalMs);
    closers.push('gc-timer', () => gcTimer.cancel());
    // A wall-clock step is logged, counted and audited; the time the daemon goes by never steps back
    // (src/time.ts WallClockGuard), and the kernel's entries are in CLOCK_BOOTTIME, which no step moves.
    const unwatchClock = wallClock.onStep((s) => {
      const direction = s.stepMs > 0 ? 'forward' : 'backward';
      log.warn(
        { event: 'wall_clock_step', step_ms: s.stepMs, behind_ms: s.behindMs, direction },
        s.behindMs > 0
          ? 'the wall clock was stepped back: not followed (certificate validity and entry expiry go on from the later time until restart)'
          : 'the wall clock was stepped forward: followed (certificates and entries expire earlier by as much)',
      );
      ops.current?.metrics.wallClockSteps.inc({ direction });
      ops.current?.metrics.wallClockBehind.set(s.behindMs / 1000);
      audit.sink.record({
        type: 'clock-step',
        outcome: 'info',
        reason: `wall-clock-${direction}`,
        details: { stepMs: s.stepMs, behindMs: s.behindMs },
      });
    });
    closers.push('wall-clock-watch', () => void unwatchClock());

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
    const operations = ops.current;
    closers.push('operations', () => operations.close());

    log.info(
      {
        event: 'daemon_ready',
        node: config.node,
        handshake: `${config.handshake.listen}:${config.handshake.port}`,
        identity_source: identity.kind,
      },
      'meshauthd ready',
    );
  }

  /** Graceful: stop accepting, finish in-flight work, flush audit. Pins and attachments stay. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const log = this.logger.child({ component: 'daemon' });
      log.info({ event: 'daemon_stopping' }, 'shutting down (BPF maps stay pinned; enforcement continues)');
      await this.closers.closeAll();
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
