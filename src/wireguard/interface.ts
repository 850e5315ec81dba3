import { readFileSync } from 'node:fs';
import type { Logger } from '../log.js';
import { sleep } from '../sync.js';
import { canonicalCidr } from './cidr.js';
import { assertWireguardKind, type LinkInfo, type WireguardDevice } from './device.js';
import { WireguardError } from './errors.js';
import type { Exec } from './exec.js';
import type { NodeKey } from './keys.js';
import {
  DEFAULT_SOCKET_DIR,
  findWireguardGoPid,
  netnsInode,
  probeSocket,
  removeSocket,
  startWireguardGo,
  uapiSocketPath,
} from './userspace.js';

export const DEFAULT_LISTEN_PORT = 51820;

export type WireguardMode = 'kernel' | 'userspace';

/** How the interface is brought up: the part of WireguardManagerOptions about the device itself. */
export interface InterfaceOptions {
  /** UDP listen port, default 51820. */
  listenPort?: number;
  /** Tunnel address(es) of this node on the interface ("10.99.0.1/32"); none by default. */
  address?: string | readonly string[];
  mtu?: number;
  /** "auto" (default): the kernel module when `ip link add ... type wireguard` works, else wireguard-go. */
  mode?: 'auto' | WireguardMode;
  /** The named network namespace the interface lives in: commands run there and wireguard-go is looked for there. */
  netns?: string;
  /**
   * wireguard-go executable: a path, or a name looked up on PATH (default "wireguard-go"). Its file
   * name is also the process name looked for in /proc (wireguard-go re-executes itself by path).
   */
  wireguardGo?: string;
}

/**
 * Bring-up of this node's WireGuard interface, apart from its peers: creates it (kernel module or
 * wireguard-go) or adopts a running one, keys it with the node key and sets port, addresses, MTU
 * and link state, each only when it differs (no re-keying on adopt). Brings it back when it
 * vanished, and removes it (with wireguard-go and its UAPI socket) on request.
 */
export class WireguardInterface {
  private constructor(
    private readonly device: WireguardDevice,
    private readonly exec: Exec,
    private readonly opts: InterfaceOptions,
    private readonly log: Logger,
    private readonly key: NodeKey,
    private ensured: EnsuredLink,
  ) {}

  /** Creates or adopts the interface and configures it; a half-configured interface it created is removed. */
  static async bringUp(
    device: WireguardDevice,
    exec: Exec,
    opts: InterfaceOptions,
    log: Logger,
    key: NodeKey,
  ): Promise<WireguardInterface> {
    const iface = new WireguardInterface(
      device,
      exec,
      opts,
      log,
      key,
      await ensureLink(device, exec, opts, log),
    );
    await iface.configureOrUndo();
    return iface;
  }

  get name(): string {
    return this.device.name;
  }

  /** "kernel" or "userspace" (wireguard-go). */
  get mode(): WireguardMode {
    return this.ensured.mode;
  }

  /** True when the interface was created here (at bring-up or when healing), false when adopted. */
  get created(): boolean {
    return this.ensured.created;
  }

  /** Index of the interface in its namespace, as last read. */
  get ifindex(): number {
    return this.ensured.link.ifindex;
  }

  get listenPort(): number {
    return this.opts.listenPort ?? DEFAULT_LISTEN_PORT;
  }

  /** Remembers link state read elsewhere (status). */
  noteLink(link: LinkInfo): void {
    this.ensured = { ...this.ensured, link };
  }

  /**
   * Brings the interface back when it vanished (wireguard-go killed, link deleted): created and
   * configured again with the same key. Returns whether it had to.
   */
  async ensurePresent(): Promise<boolean> {
    if ((await this.device.link()) !== undefined) return false;
    this.log.warn({ event: 'wireguard_interface_lost', interface: this.name }, 'interface gone; recreating');
    this.ensured = await ensureLink(this.device, this.exec, this.opts, this.log);
    await this.configureOrUndo();
    return true;
  }

  /** pid of the wireguard-go daemon (userspace mode), when it can be found. */
  pid(): number | undefined {
    if (this.mode !== 'userspace') return undefined;
    try {
      return findWireguardGoPid(
        this.name,
        netnsInode(this.opts.netns),
        basename(this.opts.wireguardGo ?? 'wireguard-go'),
      );
    } catch {
      return undefined;
    }
  }

  /** Removes the interface (and with it wireguard-go, its socket and the routes). */
  async remove(): Promise<void> {
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
    if (this.mode === 'userspace') removeSocket(uapiSocketPath(DEFAULT_SOCKET_DIR, this.name));
  }

  private async configureOrUndo(): Promise<void> {
    try {
      await this.configure();
    } catch (err) {
      // do not leave a half-configured interface we created behind
      if (this.created) await this.remove().catch(() => undefined);
      throw err;
    }
  }

  /** Key, port, addresses, MTU and link state; each set only when it differs (no re-keying on adopt). */
  private async configure(): Promise<void> {
    const state = await this.device.dump();
    if (state.interface.publicKey !== this.key.publicKey) {
      if (state.interface.publicKey !== undefined) {
        this.log.warn(
          {
            event: 'wireguard_rekey',
            interface: this.name,
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
    if (this.opts.mtu !== undefined && this.ensured.link.mtu !== this.opts.mtu)
      await this.device.setMtu(this.opts.mtu);
    if (!this.ensured.link.up) await this.device.setUp();
    const link = await this.device.link();
    if (link !== undefined) this.noteLink(link);
    this.log.info(
      {
        event: 'wireguard_interface_ready',
        interface: this.name,
        mode: this.mode,
        ifindex: this.ifindex,
        public_key: this.key.publicKey,
        listen_port: this.listenPort,
      },
      'WireGuard interface ready',
    );
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
  opts: InterfaceOptions,
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
      { event: 'wireguard_interface_adopted', interface: name, mode, ifindex: link.ifindex },
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
  opts: InterfaceOptions,
  log: Logger,
): Promise<WireguardMode> {
  const mode = opts.mode ?? 'auto';
  if (mode !== 'userspace') {
    const res = await device.addKernelLink();
    if (res.ok) {
      log.info(
        { event: 'wireguard_interface_created', interface: device.name, mode: 'kernel' },
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
      { event: 'wireguard_kernel_unavailable', interface: device.name, reason: res.output },
      'no kernel WireGuard; using wireguard-go',
    );
  }
  await startWireguardGo(exec, opts.wireguardGo ?? 'wireguard-go', device.name);
  log.info(
    { event: 'wireguard_interface_created', interface: device.name, mode: 'userspace' },
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
