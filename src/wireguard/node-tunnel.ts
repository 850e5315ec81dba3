import type { DaemonConfig } from '../config/index.js';
import { ClosedError, toError } from '../errors.js';
import type { Inventory } from '../inventory/index.js';
import type { InventoryNode } from '../inventory/index.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { systemClock, type Clock, type Timer } from '../time.js';
import { WireguardError } from './errors.js';
import type { Exec } from './exec.js';
import {
  WireguardManager,
  type ReconcileResult,
  type WireguardMode,
  type WireguardStatus,
} from './manager.js';
import { peerFromNode, type WireguardPeer } from './plan.js';

/** What the tunnel reads from the inventory (the Inventory class fits; tests may pass it directly). */
export type WireguardInventory = Pick<Inventory, 'nodes' | 'node' | 'onChange'>;

export interface StartWireguardOptions {
  /** Only `wireguard` is read: interface, listenPort, address, privateKeyFile, userspaceBinary. */
  config: Pick<DaemonConfig, 'wireguard'>;
  inventory: WireguardInventory;
  /** This node's name in the inventory. */
  nodeName: string;
  /** The daemon's state directory (`<stateDir>/wireguard/public.key` is kept up to date). */
  stateDir: string;
  logger?: Logger;
  /**
   * Called with the new ifindex when the interface had to be created again (wireguard-go killed,
   * link deleted) so that the datapath's strict mode follows it. Not called for the first one.
   */
  onIfindexChange?: (ifindex: number) => void;
  /**
   * Reconcile this often even without inventory changes, which also brings back an interface
   * that vanished. Default 30 000 ms; 0 turns it off.
   */
  resyncIntervalMs?: number;
  /** Keepalive sent to every peer, seconds; default 0 (off). */
  persistentKeepaliveSec?: number;
  mtu?: number;
  /** "auto" (default): kernel module when available, otherwise wireguard-go. */
  mode?: 'auto' | WireguardMode;
  /** Named network namespace the interface lives in (tests, benchmarks). */
  netns?: string;
  /** Command runner for `ip`, `wg` and `wireguard-go` (tests). */
  exec?: Exec;
  /** Wall clock (lastReconcile, durations) and the resync timer; default systemClock. */
  clock?: Clock;
}

/** How this node's own inventory entry relates to the key the tunnel uses. */
export type InventoryKeyState = 'match' | 'missing' | 'mismatch' | 'node-missing';

export interface WireguardTunnelStatus extends WireguardStatus {
  /** Whether the inventory publishes this node's public key (peers configure what it says). */
  readonly inventoryKey: InventoryKeyState;
  /** Remote nodes left out because the inventory has no WireGuard key for them. */
  readonly nodesWithoutKey: readonly string[];
  /** The last reconcile: when it finished (wall clock) and the error if it failed. */
  readonly lastReconcile: { readonly atMs: number; readonly error: string | undefined } | undefined;
}

/** This node's WireGuard tunnel, kept equal to the inventory. */
export interface WireguardTunnel {
  /** Base64 public key of the node (sent in the auth handshake, published in the inventory). */
  readonly publicKey: string;
  /** The 0600 file holding the node's private key (the handshake proves possession of it). */
  readonly privateKeyFile: string;
  readonly interfaceName: string;
  readonly mode: WireguardMode;
  /** Current ifindex of the interface (for the datapath's strict mode). */
  readonly ifindex: number;
  /** Interface and peer state as WireGuard reports it, plus the inventory view. */
  status(): Promise<WireguardTunnelStatus>;
  /** Makes peers and routes equal to the inventory now (it also runs on every inventory change). */
  reconcile(): Promise<ReconcileResult>;
  /**
   * Stops following the inventory. The interface, its peers and routes stay up and keep carrying
   * traffic (the next start adopts them without re-keying) unless `teardown` is set, which removes
   * the interface. Idempotent.
   */
  close(opts?: { teardown?: boolean }): Promise<void>;
}

const DEFAULT_RESYNC_MS = 30_000;

/**
 * Starts (or adopts) this node's WireGuard interface and keeps it equal to the inventory:
 *
 * - the private key is read from `config.wireguard.privateKeyFile`, generated 0600 on first start;
 * - every other inventory node that has a `wireguardPublicKey` becomes a peer with endpoint
 *   `<node address>:<config.wireguard.listenPort>` and its pod CIDRs as allowed IPs, and each of
 *   those CIDRs is routed through the interface; peers and routes nobody wants are removed;
 * - this runs now, on every inventory change, and every `resyncIntervalMs`.
 *
 * Resolves once the interface is up and configured for the current inventory.
 */
export async function startWireguard(opts: StartWireguardOptions): Promise<WireguardTunnel> {
  const wg = opts.config.wireguard;
  if (!wg.enabled) {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_CONFIG',
      'start WireGuard: wireguard.enabled is false in the configuration',
    );
  }
  const log = (opts.logger ?? silentLogger()).child({ component: 'wireguard' });
  const manager = await WireguardManager.open({
    stateDir: opts.stateDir,
    privateKeyFile: wg.privateKeyFile,
    interfaceName: wg.interface,
    listenPort: wg.listenPort,
    ...(wg.address === undefined ? {} : { address: wg.address }),
    ...(wg.userspaceBinary === undefined ? {} : { wireguardGo: wg.userspaceBinary }),
    ...(opts.mtu === undefined ? {} : { mtu: opts.mtu }),
    ...(opts.mode === undefined ? {} : { mode: opts.mode }),
    ...(opts.netns === undefined ? {} : { netns: opts.netns }),
    ...(opts.exec === undefined ? {} : { exec: opts.exec }),
    logger: log,
  });
  const tunnel = new NodeTunnel(manager, opts, log);
  try {
    await tunnel.reconcile();
  } catch (err) {
    // leave what runs in place (a restart must not cut traffic); just stop managing it
    await tunnel.close();
    throw err;
  }
  tunnel.follow(opts.resyncIntervalMs ?? DEFAULT_RESYNC_MS);
  return tunnel;
}

class NodeTunnel implements WireguardTunnel {
  private closed = false;
  private unsubscribe: (() => void) | undefined;
  private timer: Timer | undefined;
  private readonly clock: Clock;
  private lastIfindex: number;
  private lastKeyState: InventoryKeyState | undefined;
  private last: { atMs: number; error: string | undefined } | undefined;
  private withoutKey: string[] = [];

  constructor(
    private readonly manager: WireguardManager,
    private readonly opts: StartWireguardOptions,
    private readonly log: Logger,
  ) {
    this.lastIfindex = manager.ifindex;
    this.clock = opts.clock ?? systemClock;
  }

  get publicKey(): string {
    return this.manager.publicKey;
  }

  get privateKeyFile(): string {
    return this.manager.privateKeyFile;
  }

  get interfaceName(): string {
    return this.manager.interfaceName;
  }

  get mode(): WireguardMode {
    return this.manager.mode;
  }

  get ifindex(): number {
    return this.manager.ifindex;
  }

  /** Reconciles on inventory changes and on a timer from now on. */
  follow(resyncIntervalMs: number): void {
    this.unsubscribe = this.opts.inventory.onChange(() => this.background('inventory-changed'));
    if (resyncIntervalMs > 0) {
      this.timer = this.clock.setInterval(() => this.background('resync'), resyncIntervalMs);
    }
  }

  async status(): Promise<WireguardTunnelStatus> {
    if (this.closed) throw new ClosedError('read WireGuard tunnel status');
    const st = await this.manager.status();
    return {
      ...st,
      inventoryKey: this.keyState(),
      nodesWithoutKey: [...this.withoutKey],
      lastReconcile: this.last === undefined ? undefined : { ...this.last },
    };
  }

  async reconcile(): Promise<ReconcileResult> {
    if (this.closed) throw new ClosedError('reconcile WireGuard tunnel');
    const started = this.clock.now();
    try {
      this.checkOwnKey();
      const res = await this.manager.reconcile(this.wantedPeers());
      this.last = { atMs: this.clock.now(), error: undefined };
      if (res.changed) {
        this.log.info(
          {
            event: 'wireguard_reconciled',
            interface: this.interfaceName,
            peer_changes: res.plan.peers.length,
            route_changes: res.plan.routes.length,
            duration_ms: this.clock.now() - started,
          },
          'WireGuard peers and routes reconciled',
        );
      }
      return res;
    } catch (err) {
      this.last = { atMs: this.clock.now(), error: toError(err).message };
      throw err;
    } finally {
      this.noticeIfindex();
    }
  }

  async close(opts: { teardown?: boolean } = {}): Promise<void> {
    const first = !this.closed;
    this.closed = true;
    if (first) {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
      this.timer?.cancel();
      this.timer = undefined;
    }
    // teardown is honoured even on a second call (close() then close({teardown: true}))
    if (opts.teardown === true) await this.manager.destroy();
    else await this.manager.close();
  }

  private background(reason: string): void {
    if (this.closed) return;
    this.reconcile().catch((err: unknown) => {
      if (this.closed) return;
      this.log.error(
        { event: 'wireguard_reconcile_failed', interface: this.interfaceName, reason, err: toError(err) },
        'WireGuard reconcile failed; will retry',
      );
    });
  }

  private wantedPeers(): WireguardPeer[] {
    const port = this.opts.config.wireguard.listenPort;
    const keepalive = this.opts.persistentKeepaliveSec;
    const peers: WireguardPeer[] = [];
    const withoutKey: string[] = [];
    for (const node of this.opts.inventory.nodes()) {
      if (node.name === this.opts.nodeName) continue;
      const peer = peerFromNode(node, {
        port,
        ...(keepalive === undefined ? {} : { persistentKeepaliveSec: keepalive }),
      });
      if (peer === undefined) withoutKey.push(node.name);
      else peers.push(peer);
    }
    if (withoutKey.join(',') !== this.withoutKey.join(',') && withoutKey.length > 0) {
      this.log.warn(
        { event: 'wireguard_peer_no_key', interface: this.interfaceName, nodes: withoutKey },
        'inventory nodes without a WireGuard key get no tunnel',
      );
    }
    this.withoutKey = withoutKey;
    return peers;
  }

  private keyState(): InventoryKeyState {
    const self: InventoryNode | undefined = this.opts.inventory.node(this.opts.nodeName);
    if (self === undefined) return 'node-missing';
    if (self.wireguardPublicKey === undefined) return 'missing';
    return self.wireguardPublicKey === this.publicKey ? 'match' : 'mismatch';
  }

  /** Warns (once per change) when the inventory does not publish this node's key. */
  private checkOwnKey(): void {
    const state = this.keyState();
    if (state === this.lastKeyState) return;
    this.lastKeyState = state;
    if (state === 'match') return;
    this.log.warn(
      {
        event: 'wireguard_inventory_key',
        interface: this.interfaceName,
        node: this.opts.nodeName,
        reason: state,
        public_key: this.publicKey,
      },
      state === 'mismatch'
        ? 'the inventory lists another WireGuard key for this node; peers will not reach it until it is updated'
        : "the inventory does not publish this node's WireGuard key yet; add it as wireguardPublicKey",
    );
  }

  private noticeIfindex(): void {
    const now = this.manager.ifindex;
    if (now === this.lastIfindex) return;
    this.log.warn(
      {
        event: 'wireguard_ifindex_changed',
        interface: this.interfaceName,
        old: this.lastIfindex,
        ifindex: now,
      },
      'WireGuard interface was recreated',
    );
    this.lastIfindex = now;
    this.opts.onIfindexChange?.(now);
  }
}
