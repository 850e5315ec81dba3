/**
 * Pod networking through the reference CNI plugins, invoked as a container runtime invokes them
 * (CNI specification 1.0, "Execution Protocol"): the plugin binary runs in the node's network
 * namespace with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH (and CNI_ARGS) in
 * its environment and the network configuration as JSON on stdin; ADD prints a result (interfaces,
 * IPs, routes) on stdout, and any failure is an exit status other than 0 with an error object.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const CNI_PLUGINS_VERSION = 'v1.10.0';

/** Directory with the pinned `bridge`, `ptp`, `host-local` and `loopback`, or undefined. */
export function cniBinDir(): string | undefined {
  const dir =
    process.env['MESHAUTH_CNI_BIN'] ??
    join(
      process.env['MESHAUTH_CACHE_DIR'] ?? join(homedir(), '.cache', 'meshauth'),
      `cni-plugins-${CNI_PLUGINS_VERSION}`,
      'bin',
    );
  return ['bridge', 'ptp', 'host-local', 'loopback'].every((p) => existsSync(join(dir, p))) ? dir : undefined;
}

/** The two pod network topologies the e2e tests use. */
export type CniPlugin = 'bridge' | 'ptp';

export interface CniNetwork {
  /** Directory of the plugin binaries (CNI_PATH). */
  binDir: string;
  plugin: CniPlugin;
  /** Network name ("name" of the configuration). */
  name: string;
  /** The node's pod CIDR, given to host-local as its only range. */
  subnet: string;
  /** Gateway of the pods (bridge: the bridge's address; ptp: the host side of each veth). */
  gateway: string;
  /** host-local's allocation directory (one per node). */
  dataDir: string;
  /** Bridge name (bridge plugin). */
  bridge?: string;
}

/** One IP of an ADD result (CNI result "ips"). */
export interface CniIp {
  address: string;
  gateway?: string;
  interface?: number;
}

/** The ADD result (CNI specification "Success"). */
export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: CniIp[];
  routes?: Array<{ dst: string; gw?: string }>;
}

/** Error thrown when a plugin fails: its CNI error code and message. */
export class CniError extends Error {
  constructor(
    readonly command: string,
    readonly cniCode: number | undefined,
    message: string,
  ) {
    super(`CNI ${command}: ${message}${cniCode === undefined ? '' : ` (code ${cniCode})`}`);
  }
}

/** The network configuration the runtime passes on stdin. */
export function networkConfig(net: CniNetwork): Record<string, unknown> {
  const ipam = {
    type: 'host-local',
    ranges: [[{ subnet: net.subnet, gateway: net.gateway }]],
    routes: [{ dst: '0.0.0.0/0' }],
    dataDir: net.dataDir,
  };
  const base = { cniVersion: '1.0.0', name: net.name, type: net.plugin };
  if (net.plugin === 'bridge') {
    return {
      ...base,
      bridge: net.bridge ?? 'cni0',
      isGateway: true,
      ipMasq: false,
      hairpinMode: false,
      ipam,
    };
  }
  return { ...base, ipMasq: false, ipam };
}

export interface CniInvocation {
  /** Named network namespace the plugin runs in (the node), as `ip netns` knows it. */
  nodeNs: string;
  /** Named network namespace of the pod (CNI_NETNS is its /var/run/netns path). */
  podNs: string;
  containerId: string;
  ifname?: string;
  /** A fixed address for the pod (host-local's CNI_ARGS "IP"). */
  ip?: string;
}

function invoke(command: 'ADD' | 'DEL', net: CniNetwork, inv: CniInvocation): string {
  const config = networkConfig(net);
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: inv.containerId,
    CNI_NETNS: `/var/run/netns/${inv.podNs}`,
    CNI_IFNAME: inv.ifname ?? 'eth0',
    CNI_PATH: net.binDir,
    ...(inv.ip === undefined ? {} : { CNI_ARGS: `IgnoreUnknown=1;IP=${inv.ip}` }),
  };
  try {
    return execFileSync('ip', ['netns', 'exec', inv.nodeNs, join(net.binDir, net.plugin)], {
      env,
      input: JSON.stringify(config),
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 30_000,
    }).toString();
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer; message: string };
    const out = e.stdout?.toString() ?? '';
    try {
      const parsed = JSON.parse(out) as { code?: number; msg?: string; details?: string };
      throw new CniError(command, parsed.code, [parsed.msg, parsed.details].filter(Boolean).join(': '));
    } catch (parseErr) {
      if (parseErr instanceof CniError) throw parseErr;
      throw new CniError(command, undefined, (e.stderr?.toString() || out || e.message).trim());
    }
  }
}

/** CNI ADD: creates the pod's interface and addresses; returns the plugin's result. */
export function cniAdd(net: CniNetwork, inv: CniInvocation): CniResult {
  const result = JSON.parse(invoke('ADD', net, inv)) as CniResult;
  if (result.cniVersion !== '1.0.0')
    throw new CniError('ADD', undefined, `result version ${result.cniVersion}`);
  return result;
}

/** CNI DEL: removes what ADD made and releases the address. Idempotent, as the specification requires. */
export function cniDel(net: CniNetwork, inv: CniInvocation): void {
  invoke('DEL', net, inv);
}
