import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Datapath } from '../../src/datapath/index.js';
import { DevCa } from '../../src/identity/index.js';
import { OBJECT_PATH, randomPinDir } from '../integration/datapath/helpers.js';
import { NetnsLab } from './netns.js';

export const WEB = 'spiffe://demo.local/ns/demo/sa/web';
export const API = 'spiffe://demo.local/ns/demo/sa/api';

/**
 * A files inventory of two nodes: node-a (127.0.0.1, 10.10.1.0/24) runs WEB at 10.10.1.10; node-b
 * (127.0.0.2, 10.10.2.0/24) runs `peers` at 10.10.2.10, .11, …
 */
export function twoNodeInventory(peers: readonly string[] = [API]) {
  return {
    nodes: [
      { name: 'node-a', address: '127.0.0.1', podCIDRs: ['10.10.1.0/24'] },
      { name: 'node-b', address: '127.0.0.2', podCIDRs: ['10.10.2.0/24'] },
    ],
    workloads: [
      { spiffeId: WEB, node: 'node-a', ips: ['10.10.1.10'] },
      ...peers.map((spiffeId, i) => ({ spiffeId, node: 'node-b', ips: [`10.10.2.${10 + i}`] })),
    ],
  };
}

/** One `datapath.attach` entry, e.g. `{ type: 'cgroup', path, hook: 'egress' }`. */
export type AttachSetting = Record<string, string>;

export interface DaemonTestNodeOptions {
  /** Prefix of the work directory's name (made with mkdtemp). */
  prefix: string;
  /** Where the work directory is made; default the system's temporary directory. */
  parent?: string;
  /** Prefix of the NetnsLab that makes the node's cgroups. */
  labPrefix: string;
  /**
   * Make the bpffs pin directory now (true, the default), or only name one that does not exist yet,
   * for a daemon that must make it itself.
   */
  makePinDir?: boolean;
}

/**
 * node-a of a two-node files inventory, set up for meshauthd against the real datapath: a work
 * directory, a bpffs pin directory of its own, a NetnsLab for its cgroups, and writers for the
 * inventory, policy and configuration files the daemon reads. cleanup() removes all of it: TCP
 * ports held with occupy(), the lab, the pins and their directory, the work directory.
 */
export class DaemonTestNode {
  readonly dir: string;
  readonly pinDir: string;
  readonly lab: NetnsLab;
  private readonly blockers: Server[] = [];

  constructor(opts: DaemonTestNodeOptions) {
    this.dir = mkdtempSync(join(opts.parent ?? tmpdir(), opts.prefix));
    this.pinDir =
      (opts.makePinDir ?? true)
        ? randomPinDir()
        : `/sys/fs/bpf/meshauth-test-${randomBytes(4).toString('hex')}`;
    this.lab = new NetnsLab(opts.labPrefix);
  }

  /** Writes dir/inventory.yaml, twoNodeInventory(peers), and returns its path. */
  writeInventory(peers: readonly string[] = [API]): string {
    const file = join(this.dir, 'inventory.yaml');
    writeFileSync(file, stringify(twoNodeInventory(peers)));
    return file;
  }

  /** Writes dir/policy.yaml: rule `web-<i>`, WEB to `peers[i]` with mutual auth. Returns its path. */
  writeMutualPolicy(peers: readonly string[] = [API]): string {
    const file = join(this.dir, 'policy.yaml');
    writeFileSync(
      file,
      stringify({ rules: peers.map((to, i) => ({ name: `web-${i}`, from: WEB, to, auth: 'mutual' })) }),
    );
    return file;
  }

  /** The `identity` setting of a dev CA kept in dir/ca (made there when missing, else loaded). */
  async devCaIdentity(): Promise<Record<string, unknown>> {
    const caDir = join(this.dir, 'ca');
    await DevCa.init({ dir: caDir, trustDomain: 'demo.local' });
    return {
      source: 'dev-ca',
      devCa: { trustDomain: 'demo.local', caCert: join(caDir, 'ca.crt'), caKey: join(caDir, 'ca.key') },
    };
  }

  /**
   * The settings every daemon test of node-a has: state in dir/state, pins in pinDir (the compiled
   * BPF object), the attach points (default: egress of a new cgroup `pods` of the lab), the
   * handshake on 127.0.0.1:handshakePort, the files inventory and policy in dir, the API socket
   * dir/run/api.sock. `more` adds settings and replaces these.
   */
  config(
    o: { handshakePort: number; attach?: AttachSetting[] | undefined },
    more: Record<string, unknown> = {},
  ): Record<string, unknown> {
    return {
      node: 'node-a',
      stateDir: join(this.dir, 'state'),
      bpf: { pinDir: this.pinDir, object: OBJECT_PATH },
      datapath: {
        attach: o.attach ?? [{ type: 'cgroup', path: this.lab.addCgroup('pods'), hook: 'egress' }],
      },
      handshake: { listen: '127.0.0.1', port: o.handshakePort },
      inventory: { file: join(this.dir, 'inventory.yaml') },
      policy: { file: join(this.dir, 'policy.yaml') },
      api: { socket: join(this.dir, 'run', 'api.sock') },
      ...more,
    };
  }

  /** Writes `config` as YAML to dir/`name` and returns its path. */
  writeConfig(config: Record<string, unknown>, name = 'config.yaml'): string {
    const file = join(this.dir, name);
    writeFileSync(file, stringify(config));
    return file;
  }

  /** Keeps 127.0.0.1:port busy until cleanup(). */
  async occupy(port: number): Promise<void> {
    const s = createServer();
    await new Promise<void>((r) => s.listen(port, '127.0.0.1', r));
    this.blockers.push(s);
  }

  /** The pinned policy map as bpftool dumps it (keys and values, sorted). */
  dumpPolicy(): string[] {
    const out = execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', join(this.pinDir, 'ma_policy')], {
      encoding: 'utf8',
    });
    return (JSON.parse(out) as Array<{ key: unknown; value: unknown }>)
      .map((e) => JSON.stringify([e.key, e.value]))
      .sort();
  }

  /** Removes everything the node made; call after the daemon closed. */
  async cleanup(): Promise<void> {
    for (const b of this.blockers.splice(0)) await new Promise((r) => b.close(r));
    await this.lab.cleanup();
    Datapath.removePins(this.pinDir);
    rmSync(this.pinDir, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
