import { readFileSync } from 'node:fs';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { ClosedError } from '../errors.js';
import { canonicalCidr } from './cidr.js';
import { assertWireguardKind, WireguardDevice, type LinkInfo } from './device.js';
import type { PeerState } from './dump.js';
import { WireguardError } from './errors.js';
import { createExec, type Exec } from './exec.js';
import { loadOrCreateNodeKey, type NodeKey } from './keys.js';
import {
  isEmptyPlan,
  normalizePeers,
  planReconcile,
  type ReconcilePlan,
  type WireguardPeer,
} from './plan.js';
import {
  DEFAULT_SOCKET_DIR,
  findWireguardGoPid,
  netnsInode,
  probeSocket,
  removeSocket,
  startWireguardGo,
  uapiSocketPath,
} from './userspace.js';
import { sleep } from '../sync.js';

export const DEFAULT_INTERFACE_NAME = 'meshauth0';
export const DEFAULT_LISTEN_PORT = 51820;

export type WireguardMode = 'kernel' | 'userspace';

export interface WireguardManagerOptions {
  /** The daemon's state directory; the key lives in `<stateDir>/wireguard/private.key` by default. */
  stateDir: string;
  /** Where the node's private key lives instead (created 0600 there when missing). */
  privateKeyFile?: string;
  /** Default "meshauth0". With wireguard-go the name must be unique on the host, not only in its namespace. */
  interfaceName?: string;
  /** UDP listen port, default 51820. */
  listenPort?: number;
  /** Tunnel address(es) of this node on the interface ("10.99.0.1/32"); none by default. */
  address?: string | readonly string[];
  mtu?: number;
  /** "auto" (default): the kernel module when `ip link add ... type wireguard` works, else wireguard-go. */
  mode?: 'auto' | WireguardMode;
  /**
   * The named network namespace the interface lives in: commands run there (unless `exec` is
   * given, which must then enter it itself) and wireguard-go is looked for there.
   */
  netns?: string;
  /** Command runner (default: child processes, inside `netns` if set). */
  exec?: Exec;
  /**
   * wireguard-go executable: a path, or a name looked up on PATH (default "wireguard-go"). Its file
   * name is also the process name looked for in /proc (wireguard-go re-executes itself by path).
   */
  wireguardGo?: string;
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
 * Owns this node's WireGuard interface: creates or adopts it, keys it with the node key, and
 * reconciles peers and routes to the wanted set. `close()` leaves the interface and its traffic
 * running (a later open() with the same state dir adopts it without re-keying); `destroy()`
 * removes it.
 */
export class WireguardManager {
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  private names = new Map<string, string>();

  private modeValue: WireguardMode;
  private linkInfo: LinkInfo;
  private createdValue: boolean;

  private constructor(
    private readonly device: WireguardDevice,
    private readonly exec: Exec,
    private readonly opts: WireguardManagerOptions,
    private readonly log: Logger,
    readonly key: NodeKey,
    ensured: EnsuredLink,
  ) {
    this.modeValue = ensured.mode;
    this.linkInfo = ensured.link;
    this.createdValue = ensured.created;
  }

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
      log.info({ event: 'wireguard.key.created', public_key: key.publicKey }, 'generated node WireGuard key');
    }
    const ensured = await ensureLink(device, exec, opts, log);
    const mgr = new WireguardManager(device, exec, opts, log, key, ensured);
    await mgr.configureOrUndo();
    return mgr;
  }

  /** "kernel" or "userspace" (wireguard-go). */
  get mode(): WireguardMode {
    return this.modeValue;
  }

  /** True when the interface was created by this manager (at open or when healing), false when adopted. */
  get created(): boolean {
    return this.createdValue;
  }

  get interfaceName(): string {
    return this.device.name;
  }

  get publicKey(): string {
    return this.key.publicKey;
  }

  /** Index of the interface in its namespace (the datapath's strict mode needs it). */
  get ifindex(): number {
    return this.linkInfo.ifindex;
  }

  get listenPort(): number {
    return this.opts.listenPort ?? DEFAULT_LISTEN_PORT;
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
    this.linkInfo = link;
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
    if (this.mode !== 'userspace') return undefined;
    try {
      return findWireguardGoPid(
        this.interfaceName,
        this.nsInode(),
        basename(this.opts.wireguardGo ?? 'wireguard-go'),
      );
    } catch {
      return undefined;
    }
  }

  /** Stops managing; the interface, its peers and routes stay and keep carrying traffic. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.log.info(
      { event: 'wireguard.closed', interface: this.interfaceName },
      'left WireGuard interface running',
    );
  }

  /** Removes the interface (and with it wireguard-go, its socket and the routes). Idempotent. */
  async destroy(): Promise<void> {
    this.closed = true;
    await this.queue;
    await this.removeInterface();
    this.log.info(
      { event: 'wireguard.interface.destroyed', interface: this.interfaceName },
      'removed WireGuard interface',
    );
  }

  private async removeInterface(): Promise<void> {
    const pid = this.pid();
    if ((await this.device.link()) !== undefined) await this.device.deleteLink();
    if (pid !== undefined) {
      // wireguard-go exits when its tun device goes away; make sure of it
      for (let i = 0; i < 40 && processAlive(pid); i++) await sleep(50);
      if (processAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    if (this.mode === 'userspace') removeSocket(uapiSocketPath(DEFAULT_SOCKET_DIR, this.interfaceName));
  }

  private async reconcileNow(peers: readonly WireguardPeer[]): Promise<ReconcileResult> {
    const desired = normalizePeers(peers, this.publicKey);
    if ((await this.device.link()) === undefined) {
      // the interface vanished under us (wireguard-go killed, link deleted): bring it back
      this.log.warn(
        { event: 'wireguard.interface.lost', interface: this.interfaceName },
        'interface gone; recreating',
      );
      const ensured = await ensureLink(this.device, this.exec, this.opts, this.log);
      this.modeValue = ensured.mode;
      this.linkInfo = ensured.link;
      this.createdValue = ensured.created;
      await this.configureOrUndo();
    }
    const [state, routes] = await Promise.all([this.device.dump(), this.device.routes()]);
    const plan = planReconcile(desired, state.peers, routes);
    this.names = new Map(desired.map((p) => [p.publicKey, p.name]));
    for (const change of plan.peers.filter((c) => c.kind === 'remove')) {
      await this.device.applyPeer(change);
      this.log.info(
        { event: 'wireguard.peer.removed', interface: this.interfaceName, public_key: change.publicKey },
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
          event: change.kind === 'add' ? 'wireguard.peer.added' : 'wireguard.peer.updated',
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
          event: r.kind === 'add' ? 'wireguard.route.added' : 'wireguard.route.removed',
          interface: this.interfaceName,
          cidr: r.cidr,
        },
        `route ${r.kind === 'add' ? 'added' : 'removed'}`,
      );
    }
    return { plan, changed: !isEmptyPlan(plan) };
  }

  private async configureOrUndo(): Promise<void> {
    try {
      await this.configureInterface();
    } catch (err) {
      // do not leave a half-configured interface we created behind
      if (this.created) await this.removeInterface().catch(() => undefined);
      throw err;
    }
  }

  /** Key, port, addresses, MTU and link state; each set only when it differs (no re-keying on adopt). */
  private async configureInterface(): Promise<void> {
    const state = await this.device.dump();
    if (state.interface.publicKey !== this.publicKey) {
      if (state.interface.publicKey !== undefined) {
        this.log.warn(
          {
            event: 'wireguard.rekey',
            interface: this.interfaceName,
            reason: 'key-differs',
            old_public_key: state.interface.publicKey,
          },
          'interface had another key; setting the node key',
        );
      }
      await this.device.setPrivateKeyFile(this.key.privateKeyFile);
    }
    if (state.interface.listenPort !== this.listenPort) await this.device.setListenPort(this.listenPort);
    const addresses =
      this.opts.address === undefined
        ? []
        : typeof this.opts.address === 'string'
          ? [this.opts.address]
          : this.opts.address;
    if (addresses.length > 0) {
      const have = new Set((await this.device.addresses()).map(hostCidr));
      for (const a of addresses) if (!have.has(hostCidr(a))) await this.device.addAddress(a);
    }
    if (this.opts.mtu !== undefined && this.linkInfo.mtu !== this.opts.mtu)
      await this.device.setMtu(this.opts.mtu);
    if (!this.linkInfo.up) await this.device.setUp();
    const link = await this.device.link();
    if (link !== undefined) this.linkInfo = link;
    this.log.info(
      {
        event: 'wireguard.interface.ready',
        interface: this.interfaceName,
        mode: this.mode,
        ifindex: this.ifindex,
        public_key: this.publicKey,
        listen_port: this.listenPort,
      },
      'WireGuard interface ready',
    );
  }

  private nsInode(): number {
    return netnsInode(this.opts.netns);
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new ClosedError(what);
  }
}

interface EnsuredLink {
  readonly mode: WireguardMode;
  readonly link: LinkInfo;
  readonly created: boolean;
}

/** Adopts the interface when it runs, creates it otherwise; refuses names that belong to something else. */
async function ensureLink(
  device: WireguardDevice,
  exec: Exec,
  opts: WireguardManagerOptions,
  log: Logger,
): Promise<EnsuredLink> {
  const name = device.name;
  const socket = uapiSocketPath(DEFAULT_SOCKET_DIR, name);
  const link = await device.link();
  if (link !== undefined) {
    const mode = assertWireguardKind(name, link);
    if (mode === 'userspace' && (await probeSocket(socket)) !== 'live') {
      throw new WireguardError(
        'MESHAUTH_ERR_WIREGUARD_INTERFACE_CONFLICT',
        `open WireGuard interface ${name}: a tun interface of that name exists but no wireguard-go answers on ${socket}`,
      );
    }
    log.info(
      { event: 'wireguard.interface.adopted', interface: name, mode, ifindex: link.ifindex },
      'adopted running interface',
    );
    return { mode, link, created: false };
  }
  const sock = await probeSocket(socket);
  if (sock === 'live') {
    throw new WireguardError(
      'MESHAUTH_ERR_WIREGUARD_INTERFACE_CONFLICT',
      `open WireGuard interface ${name}: wireguard-go for an interface of that name runs in another network namespace ` +
        `(${socket}); choose an interface name unique on this host`,
    );
  }
  if (sock === 'stale') removeSocket(socket);
  const mode = await createInterface(device, exec, opts, log);
  return { mode, link: await waitForLink(device), created: true };
}

async function createInterface(
  device: WireguardDevice,
  exec: Exec,
  opts: WireguardManagerOptions,
  log: Logger,
): Promise<WireguardMode> {
  const mode = opts.mode ?? 'auto';
  if (mode !== 'userspace') {
    const res = await device.addKernelLink();
    if (res.ok) {
      log.info(
        { event: 'wireguard.interface.created', interface: device.name, mode: 'kernel' },
        'created kernel WireGuard interface',
      );
      return 'kernel';
    }
    if (mode === 'kernel') {
      throw new WireguardError(
        'MESHAUTH_ERR_WIREGUARD_COMMAND',
        `create WireGuard interface ${device.name}: \`ip link add dev ${device.name} type wireguard\` failed: ${res.output}`,
        { command: ['ip', 'link', 'add', 'dev', device.name, 'type', 'wireguard'], output: res.output },
      );
    }
    log.info(
      { event: 'wireguard.kernel.unavailable', interface: device.name, reason: res.output },
      'no kernel WireGuard; using wireguard-go',
    );
  }
  await startWireguardGo(exec, opts.wireguardGo ?? 'wireguard-go', device.name);
  log.info(
    { event: 'wireguard.interface.created', interface: device.name, mode: 'userspace' },
    'started wireguard-go',
  );
  return 'userspace';
}

async function waitForLink(device: WireguardDevice): Promise<LinkInfo> {
  for (let i = 0; i < 50; i++) {
    const link = await device.link();
    if (link !== undefined) return link;
    await sleep(20);
  }
  throw new WireguardError(
    'MESHAUTH_ERR_WIREGUARD_USERSPACE_START',
    `create WireGuard interface ${device.name}: interface did not appear`,
  );
}

/** "10.0.0.1/24" and "10.0.0.1/32" name different things on an interface; compare address and length. */
function hostCidr(text: string): string {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const len = slash < 0 ? (addr.includes(':') ? '128' : '32') : text.slice(slash + 1);
  // canonical address text, prefix length kept as given
  const canon = canonicalCidr(`${addr}/${addr.includes(':') ? 128 : 32}`);
  return `${canon.slice(0, canon.indexOf('/'))}/${len}`;
}

/** True while the process exists and has not exited (a zombie has). */
function processAlive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}
