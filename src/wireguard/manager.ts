import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { ClosedError } from '../errors.js';
import { WireguardDevice } from './device.js';
import type { PeerState } from './dump.js';
import { WireguardError } from './errors.js';
import { createExec, type Exec } from './exec.js';
import { WireguardInterface, type InterfaceOptions, type WireguardMode } from './interface.js';
import { loadOrCreateNodeKey, type NodeKey } from './keys.js';
import {
  isEmptyPlan,
  normalizePeers,
  planReconcile,
  type ReconcilePlan,
  type WireguardPeer,
} from './plan.js';

export { DEFAULT_LISTEN_PORT, type WireguardMode } from './interface.js';

export const DEFAULT_INTERFACE_NAME = 'meshauth0';

export interface WireguardManagerOptions extends InterfaceOptions {
  /** The daemon's state directory; the key lives in `<stateDir>/wireguard/private.key` by default. */
  stateDir: string;
  /** Where the node's private key lives instead (created 0600 there when missing). */
  privateKeyFile?: string;
  /** Default "meshauth0". With wireguard-go the name must be unique on the host, not only in its namespace. */
  interfaceName?: string;
  /** Command runner (default: child processes, inside `netns` if set, which must then enter it itself). */
  exec?: Exec;
  wg?: string;
  ip?: string;
  logger?: Logger;
}

export interface PeerStatus extends PeerState {
  /** The peer's name from the last reconcile, when known. */
  readonly name: string | undefined;
}

export interface WireguardStatus {
  readonly interfaceName: string;
  readonly mode: WireguardMode;
  readonly ifindex: number;
  readonly up: boolean;
  /** pid of wireguard-go (userspace mode), when found. */
  readonly pid: number | undefined;
  readonly publicKey: string;
  readonly listenPort: number;
  readonly peers: readonly PeerStatus[];
}

export interface ReconcileResult {
  /** The changes that were applied (empty when the device already matched). */
  readonly plan: ReconcilePlan;
  readonly changed: boolean;
}

/**
 * Owns this node's WireGuard interface: brings it up (WireguardInterface: create or adopt, key,
 * port, addresses) and reconciles peers and routes to the wanted set. `close()` leaves the
 * interface and its traffic running (a later open() with the same state dir adopts it without
 * re-keying); `destroy()` removes it.
 */
export class WireguardManager {
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  private names = new Map<string, string>();

  private constructor(
    private readonly device: WireguardDevice,
    private readonly iface: WireguardInterface,
    private readonly log: Logger,
    readonly key: NodeKey,
  ) {}

  /** Loads (or creates) the node key, then creates or adopts and configures the interface. */
  static async open(opts: WireguardManagerOptions): Promise<WireguardManager> {
    const log = (opts.logger ?? silentLogger()).child({ component: 'wireguard' });
    const name = opts.interfaceName ?? DEFAULT_INTERFACE_NAME;
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) {
      throw new WireguardError(
        'MESHAUTH_ERR_WIREGUARD_INTERFACE_CONFLICT',
        `open WireGuard interface: bad interface name ${JSON.stringify(name)}`,
      );
    }
    const exec = opts.exec ?? createExec(opts.netns === undefined ? {} : { netns: opts.netns });
    const device = new WireguardDevice(exec, name, { ip: opts.ip ?? 'ip', wg: opts.wg ?? 'wg' });
    const key = loadOrCreateNodeKey(
      opts.stateDir,
      opts.privateKeyFile === undefined ? {} : { privateKeyFile: opts.privateKeyFile },
    );
    if (key.created) {
      log.info({ event: 'wireguard_key_created', public_key: key.publicKey }, 'generated node WireGuard key');
    }
    const iface = await WireguardInterface.bringUp(device, exec, opts, log, key);
    return new WireguardManager(device, iface, log, key);
  }

  /** "kernel" or "userspace" (wireguard-go). */
  get mode(): WireguardMode {
    return this.iface.mode;
  }

  /** True when the interface was created by this manager (at open or when healing), false when adopted. */
  get created(): boolean {
    return this.iface.created;
  }

  get interfaceName(): string {
    return this.device.name;
  }

  get publicKey(): string {
    return this.key.publicKey;
  }

  /** The 0600 file holding the node's private key (read by the handshake's WireGuard binding). */
  get privateKeyFile(): string {
    return this.key.privateKeyFile;
  }

  /** Index of the interface in its namespace (the datapath's strict mode needs it). */
  get ifindex(): number {
    return this.iface.ifindex;
  }

  get listenPort(): number {
    return this.iface.listenPort;
  }

  /**
   * Makes peers and routes equal to `peers`: adds and updates peers, removes peers not listed,
   * routes each peer's allowed IPs through the interface and removes routes no peer needs.
   * Calls are serialized; a call that finds nothing to change runs only read commands.
   */
  reconcile(peers: readonly WireguardPeer[]): Promise<ReconcileResult> {
    if (this.closed) return Promise.reject(new ClosedError('reconcile WireGuard peers'));
    const run = this.queue.then(() => this.reconcileNow(peers));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Interface and per-peer state read back from `wg show <if> dump`. */
  async status(): Promise<WireguardStatus> {
    this.assertOpen('read WireGuard status');
    const [state, link] = await Promise.all([this.device.dump(), this.device.link()]);
    if (link === undefined) {
      throw new WireguardError(
        'MESHAUTH_ERR_WIREGUARD_INTERFACE_GONE',
        `read WireGuard status: interface ${this.interfaceName} is gone`,
      );
    }
    this.iface.noteLink(link);
    return {
      interfaceName: this.interfaceName,
      mode: this.mode,
      ifindex: link.ifindex,
      up: link.up,
      pid: this.pid(),
      publicKey: state.interface.publicKey ?? '',
      listenPort: state.interface.listenPort,
      peers: state.peers.map((p) => ({ ...p, name: this.names.get(p.publicKey) })),
    };
  }

  /** pid of the wireguard-go daemon (userspace mode), when it can be found. */
  pid(): number | undefined {
    return this.iface.pid();
  }

  /** Stops managing; the interface, its peers and routes stay and keep carrying traffic. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.log.info(
      { event: 'wireguard_closed', interface: this.interfaceName },
      'left WireGuard interface running',
    );
  }

  /** Removes the interface (and with it wireguard-go, its socket and the routes). Idempotent. */
  async destroy(): Promise<void> {
    this.closed = true;
    await this.queue;
    await this.iface.remove();
    this.log.info(
      { event: 'wireguard_interface_destroyed', interface: this.interfaceName },
      'removed WireGuard interface',
    );
  }

  private async reconcileNow(peers: readonly WireguardPeer[]): Promise<ReconcileResult> {
    const desired = normalizePeers(peers, this.publicKey);
    // the interface vanished under us (wireguard-go killed, link deleted): bring it back
    await this.iface.ensurePresent();
    const [state, routes] = await Promise.all([this.device.dump(), this.device.routes()]);
    const plan = planReconcile(desired, state.peers, routes);
    this.names = new Map(desired.map((p) => [p.publicKey, p.name]));
    for (const change of plan.peers.filter((c) => c.kind === 'remove')) {
      await this.device.applyPeer(change);
      this.log.info(
        { event: 'wireguard_peer_removed', interface: this.interfaceName, public_key: change.publicKey },
        'removed peer',
      );
    }
    for (const change of plan.peers) {
      if (change.kind === 'remove') continue;
      await this.device.applyPeer(change);
      // a peer with keepalive on sent one already when it was set
      if (change.kind === 'add' && change.peer.persistentKeepaliveSec === 0) {
        await this.device.primeHandshake(change.peer.publicKey);
      }
      this.log.info(
        {
          event: change.kind === 'add' ? 'wireguard_peer_added' : 'wireguard_peer_updated',
          interface: this.interfaceName,
          node: change.peer.name,
          public_key: change.peer.publicKey,
          endpoint: change.peer.endpoint,
          allowed_ips: change.peer.allowedIPs,
          ...(change.kind === 'update' ? { fields: change.fields } : {}),
        },
        change.kind === 'add' ? 'added peer' : 'updated peer',
      );
    }
    for (const r of plan.routes) {
      if (r.kind === 'add') await this.device.replaceRoute(r.cidr);
      else await this.device.deleteRoute(r.cidr);
      this.log.info(
        {
          event: r.kind === 'add' ? 'wireguard_route_added' : 'wireguard_route_removed',
          interface: this.interfaceName,
          cidr: r.cidr,
        },
        `route ${r.kind === 'add' ? 'added' : 'removed'}`,
      );
    }
    return { plan, changed: !isEmptyPlan(plan) };
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new ClosedError(what);
  }
}
