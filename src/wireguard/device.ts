import { canonicalCidr } from './cidr.js';
import { parseWgDump, type DeviceState } from './dump.js';
import { WireguardError } from './errors.js';
import { commandError, runChecked, type Exec } from './exec.js';
import { wgSetArgs, type PeerChange } from './plan.js';

/** What `ip -d link show` says about the interface. */
export interface LinkInfo {
  readonly ifindex: number;
  /** "wireguard" for the kernel module, "tun" for wireguard-go, anything else is not ours. */
  readonly kind: string | undefined;
  readonly up: boolean;
  readonly mtu: number;
}

export interface DeviceCommands {
  readonly ip: string;
  readonly wg: string;
}

/**
 * Thin command layer over one WireGuard interface: every method is one `ip` or `wg` invocation
 * (or a read of its JSON / dump output). Failures are WireguardErrors naming the command and its
 * output. Decisions (what to change) live in the manager and the planner.
 */
export class WireguardDevice {
  constructor(
    private readonly exec: Exec,
    readonly name: string,
    private readonly cmds: DeviceCommands = { ip: 'ip', wg: 'wg' },
  ) {}

  /** The link, or undefined when no interface of that name exists in this namespace. */
  async link(): Promise<LinkInfo | undefined> {
    const args = ['-j', '-d', 'link', 'show', 'dev', this.name];
    const res = await this.exec(this.cmds.ip, args);
    if (res.code !== 0) {
      if (/does not exist|Cannot find device/i.test(res.stderr)) return undefined;
      throw commandError(`inspect interface ${this.name}`, this.cmds.ip, args, res);
    }
    const parsed = JSON.parse(res.stdout) as Array<{
      ifindex: number;
      flags?: string[];
      mtu: number;
      linkinfo?: { info_kind?: string };
    }>;
    const l = parsed[0];
    if (l === undefined) return undefined;
    return {
      ifindex: l.ifindex,
      kind: l.linkinfo?.info_kind,
      up: (l.flags ?? []).includes('UP'),
      mtu: l.mtu,
    };
  }

  /** `ip link add <if> type wireguard`; false (nothing created) when the kernel has no WireGuard. */
  async addKernelLink(): Promise<{ ok: true } | { ok: false; output: string }> {
    const res = await this.exec(this.cmds.ip, ['link', 'add', 'dev', this.name, 'type', 'wireguard']);
    if (res.code === 0) return { ok: true };
    return { ok: false, output: `${res.stderr}${res.stdout}`.trim() };
  }

  async deleteLink(): Promise<void> {
    await runChecked(this.exec, `delete interface ${this.name}`, this.cmds.ip, [
      'link',
      'del',
      'dev',
      this.name,
    ]);
  }

  async setUp(): Promise<void> {
    await runChecked(this.exec, `bring up ${this.name}`, this.cmds.ip, [
      'link',
      'set',
      'dev',
      this.name,
      'up',
    ]);
  }

  async setMtu(mtu: number): Promise<void> {
    await runChecked(this.exec, `set mtu of ${this.name}`, this.cmds.ip, [
      'link',
      'set',
      'dev',
      this.name,
      'mtu',
      String(mtu),
    ]);
  }

  /** Addresses on the interface, canonical prefixes with the host part kept ("10.0.0.1/32"). */
  async addresses(): Promise<string[]> {
    const out = await runChecked(this.exec, `list addresses of ${this.name}`, this.cmds.ip, [
      '-j',
      'addr',
      'show',
      'dev',
      this.name,
    ]);
    const parsed = JSON.parse(out) as Array<{
      addr_info?: Array<{ local: string; prefixlen: number; scope?: string }>;
    }>;
    return (parsed[0]?.addr_info ?? [])
      .filter((a) => a.scope !== 'link')
      .map((a) => `${a.local}/${a.prefixlen}`);
  }

  async addAddress(cidr: string): Promise<void> {
    await runChecked(this.exec, `assign address to ${this.name}`, this.cmds.ip, [
      'addr',
      'replace',
      cidr,
      'dev',
      this.name,
    ]);
  }

  /** `wg show <if> dump`, parsed. */
  async dump(): Promise<DeviceState> {
    return parseWgDump(
      await runChecked(this.exec, `read WireGuard state of ${this.name}`, this.cmds.wg, [
        'show',
        this.name,
        'dump',
      ]),
    );
  }

  /** Sets the private key from a file (the key never appears on a command line). */
  async setPrivateKeyFile(file: string): Promise<void> {
    await runChecked(this.exec, `set private key of ${this.name}`, this.cmds.wg, [
      'set',
      this.name,
      'private-key',
      file,
    ]);
  }

  async setListenPort(port: number): Promise<void> {
    await runChecked(this.exec, `set listen port of ${this.name}`, this.cmds.wg, [
      'set',
      this.name,
      'listen-port',
      String(port),
    ]);
  }

  async applyPeer(change: PeerChange): Promise<void> {
    const key = change.kind === 'remove' ? change.publicKey : change.peer.publicKey;
    await runChecked(
      this.exec,
      `${change.kind} peer ${key} on ${this.name}`,
      this.cmds.wg,
      wgSetArgs(this.name, change),
    );
  }

  /**
   * Makes the interface start a handshake with the peer now. Enabling persistent keepalive sends
   * a keepalive at once (kernel and wireguard-go alike), which needs a session, hence a handshake;
   * the setting is then put back to off. Used for newly added peers so that a peer still holding
   * a session from before our restart switches to the new one instead of sending into the void
   * until its own timers give up.
   */
  async primeHandshake(publicKey: string): Promise<void> {
    for (const value of ['1', 'off']) {
      await runChecked(this.exec, `start handshake with ${publicKey} on ${this.name}`, this.cmds.wg, [
        'set',
        this.name,
        'peer',
        publicKey,
        'persistent-keepalive',
        value,
      ]);
    }
  }

  /** Destination prefixes of the non-kernel routes (main table, IPv4 and IPv6) through this interface. */
  async routes(): Promise<string[]> {
    const out: string[] = [];
    for (const family of ['-4', '-6']) {
      const text = await runChecked(this.exec, `list routes of ${this.name}`, this.cmds.ip, [
        family,
        '-j',
        'route',
        'show',
        'dev',
        this.name,
      ]);
      const parsed = JSON.parse(text === '' ? '[]' : text) as Array<{ dst: string; protocol?: string }>;
      for (const r of parsed) {
        if (r.protocol === 'kernel' || r.dst === 'default') continue;
        out.push(canonicalCidr(r.dst));
      }
    }
    return out;
  }

  async replaceRoute(cidr: string): Promise<void> {
    await runChecked(this.exec, `route ${cidr} through ${this.name}`, this.cmds.ip, [
      'route',
      'replace',
      cidr,
      'dev',
      this.name,
    ]);
  }

  async deleteRoute(cidr: string): Promise<void> {
    const args = ['route', 'del', cidr, 'dev', this.name];
    const res = await this.exec(this.cmds.ip, args);
    // already gone is fine: the goal is its absence
    if (res.code !== 0 && !/No such process/i.test(res.stderr)) {
      throw commandError(`remove route ${cidr} from ${this.name}`, this.cmds.ip, args, res);
    }
  }
}

export function assertWireguardKind(name: string, link: LinkInfo): 'kernel' | 'userspace' {
  if (link.kind === 'wireguard') return 'kernel';
  if (link.kind === 'tun') return 'userspace';
  throw new WireguardError(
    'MESHAUTH_ERR_WIREGUARD_INTERFACE_CONFLICT',
    `open WireGuard interface ${name}: an interface of that name exists with kind ${link.kind ?? 'unknown'}`,
  );
}
