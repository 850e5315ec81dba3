/**
 * Runs meshauthd on the simulated nodes of demo/topology.ts: writes the dev CA, the shared
 * inventory and policy and one config per node, starts and stops the daemons, reads their logs
 * and their pinned BPF maps (through bpftool, independently of our own binding).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { VERDICT_NAMES } from '../src/datapath/wire.js';
import { DevCa } from '../src/identity/index.js';
import { run } from '../test/helpers/netns.js';
import { TRUST_DOMAIN, type Topology } from './topology.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..'); // demo/x.ts -> repo root; dist/demo/x.js -> dist
export const PACKAGE_ROOT = ROOT.endsWith('/dist') ? resolve(ROOT, '..') : ROOT;
const DIST = join(PACKAGE_ROOT, 'dist');

export interface PolicyRule {
  name: string;
  from: string;
  to: string;
}

export interface ClusterOptions {
  workDir: string;
  /**
   * Put each node's pods in a cgroup of their own and attach the sock_ops program there, so the
   * first SYN of an unauthenticated pair is retransmitted after synRto instead of 1 s. Default true.
   */
  sockops?: boolean;
  /**
   * Where the datapath programs sit: `tc` on the node's uplink (default), or `cgroup`: cgroup-skb
   * programs on the node's pod cgroup, which need no knowledge of the pods' interfaces (any CNI).
   */
  attach?: 'tc' | 'cgroup';
  /**
   * Pod traffic between nodes through WireGuard (wireguard-go): keys made at init and published in
   * the inventory, the datapath on the tunnel interface; `strict` also drops remote-pod traffic
   * that arrives on the underlay.
   */
  wireguard?: { strict?: boolean };
  /** A bpffs mount; each node pins its maps in a sub-directory. */
  bpffs: string;
  rules: PolicyRule[];
  maxEntryTtl?: string;
  /** 0 disables proactive re-authentication before expiry. */
  reauthAt?: number;
  signalThrottle?: string;
  /** datapath.synRto of every node (default the daemon's). */
  synRto?: string;
  /** datapath.synReplay of every node (default the daemon's). */
  synReplay?: boolean;
  svidTtl?: string;
  /** Authenticate policy-implied pairs before their first packet. */
  preauthenticate?: boolean;
  /** auth.mode of every node, or per node (default per-pair). */
  authMode?: 'per-pair' | 'channel' | ((node: string) => 'per-pair' | 'channel');
  logLevel?: string;
  /** The API's optional TCP listener of a node (api.tcp in its config), or undefined for none. */
  apiTcp?: (node: string) => { listen: string; allowedIds: string[]; identity?: string } | undefined;
  extraConfig?: (node: string) => Record<string, unknown>;
  /**
   * Run the daemons as root with only these capabilities ("BPF", "NET_ADMIN", ...), as a
   * container that drops all and adds these does (setpriv: bounding and inheritable sets).
   * Default: all of root's.
   */
  capabilities?: readonly string[];
  /** Extra environment of a node's meshauthd (set with env(1) inside the namespace), e.g. LD_PRELOAD. */
  daemonEnv?: (node: string) => Record<string, string> | undefined;
}

export interface LogLine {
  level: number;
  event?: string;
  msg?: string;
  [k: string]: unknown;
}

export interface DaemonHandle {
  node: string;
  child: ChildProcess;
  logs: LogLine[];
  exited: Promise<number | null>;
}

export const podTool = (): string => join(DIST, 'demo/pod-tool.js');

export class Cluster {
  readonly daemons = new Map<string, DaemonHandle>();
  readonly caDir: string;
  /** Node name -> cgroup v2 directory of its pods (when sock_ops is on). */
  private readonly cgroups = new Map<string, string>();
  /** The same directories as the daemons see them. */
  private readonly daemonCgroups = new Map<string, string>();

  constructor(
    readonly topo: Topology,
    readonly opts: ClusterOptions,
  ) {
    this.caDir = join(opts.workDir, 'ca');
  }

  /**
   * The node's WireGuard interface. wireguard-go's control sockets are host-wide (not per network
   * namespace), so the name carries the lab's random tag.
   */
  wgInterface(node: string): string {
    return `${this.topo.lab.tag}${this.topo.nodes.findIndex((n) => n.name === node)}`.slice(-15);
  }

  pinDir(node: string): string {
    return join(this.opts.bpffs, node);
  }

  stateDir(node: string): string {
    return join(this.opts.workDir, node, 'state');
  }

  configPath(node: string): string {
    return join(this.opts.workDir, node, 'config.yaml');
  }

  apiSocket(node: string): string {
    return join(this.opts.workDir, node, 'api.sock');
  }

  /** Writes CA, inventory, policy and per-node configs. */
  async init(): Promise<void> {
    mkdirSync(this.opts.workDir, { recursive: true });
    await DevCa.init({ dir: this.caDir, trustDomain: TRUST_DOMAIN });
    if ((this.opts.sockops ?? true) || this.opts.attach === 'cgroup') {
      // The daemons run under `ip netns exec`, which remounts /sys: they reach the same cgroup
      // hierarchy through a second mount outside /sys. Unmounted last, after the cgroups are gone.
      const mnt = join(this.opts.workDir, 'cgroup2');
      mkdirSync(mnt, { recursive: true });
      run('mount', ['-t', 'cgroup2', 'none', mnt]);
      this.topo.lab.onCleanup(() => void run('umount', [mnt]));
      for (const n of this.topo.nodes) {
        const dir = this.topo.lab.addCgroup(`${n.name}-pods`);
        this.cgroups.set(n.name, dir);
        this.daemonCgroups.set(n.name, join(mnt, basename(dir)));
      }
    }
    const wgKeys = new Map<string, string>();
    if (this.opts.wireguard) {
      for (const n of this.topo.nodes) {
        const priv = run('wg', ['genkey']).trim();
        const file = join(this.stateDir(n.name), 'wireguard', 'private.key');
        mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
        writeFileSync(file, `${priv}\n`, { mode: 0o600 });
        wgKeys.set(n.name, run('wg', ['pubkey'], { input: `${priv}\n` }).trim());
      }
    }
    const inventory = {
      nodes: this.topo.nodes.map((n) => ({
        name: n.name,
        address: n.underlayIp,
        podCIDRs: [n.podCidr],
        ...(wgKeys.has(n.name) ? { wireguardPublicKey: wgKeys.get(n.name) } : {}),
      })),
      workloads: this.topo.pods.map((p) => ({
        name: p.name,
        spiffeId: p.spiffeId,
        node: p.node,
        ips: [p.ip],
        selectors: ['k8s:ns:demo', `k8s:sa:${p.name}`],
      })),
    };
    writeFileSync(join(this.opts.workDir, 'inventory.yaml'), stringify(inventory));
    writeFileSync(
      join(this.opts.workDir, 'policy.yaml'),
      stringify({ rules: this.opts.rules.map((r) => ({ ...r, auth: 'mutual' })) }),
    );
    for (const n of this.topo.nodes) {
      mkdirSync(join(this.opts.workDir, n.name), { recursive: true });
      const config = {
        node: n.name,
        stateDir: this.stateDir(n.name),
        bpf: { pinDir: this.pinDir(n.name), object: join(PACKAGE_ROOT, 'bpf/meshauth.bpf.o') },
        datapath: {
          attach: [
            ...(this.opts.attach === 'cgroup'
              ? (['egress', 'ingress'] as const).map((hook) => ({
                  type: 'cgroup',
                  path: this.daemonCgroups.get(n.name),
                  hook,
                }))
              : this.opts.wireguard
                ? [
                    { type: 'tc', interface: this.wgInterface(n.name), hook: 'egress', semantics: 'egress' },
                    {
                      type: 'tc',
                      interface: this.wgInterface(n.name),
                      hook: 'ingress',
                      semantics: 'ingress',
                    },
                    // Pod traffic must come through the tunnel; strict mode drops it on the underlay.
                    { type: 'tc', interface: 'eth0', hook: 'ingress', semantics: 'ingress' },
                  ]
                : [
                    { type: 'tc', interface: 'eth0', hook: 'egress', semantics: 'egress' },
                    { type: 'tc', interface: 'eth0', hook: 'ingress', semantics: 'ingress' },
                  ]),
            ...(this.daemonCgroups.has(n.name) && (this.opts.sockops ?? true)
              ? [{ type: 'sockops', path: this.daemonCgroups.get(n.name) }]
              : []),
          ],
          strictWireguard: this.opts.wireguard?.strict ?? false,
          signalThrottle: this.opts.signalThrottle ?? '250ms',
          ...(this.opts.synRto ? { synRto: this.opts.synRto } : {}),
          ...(this.opts.synReplay !== undefined ? { synReplay: this.opts.synReplay } : {}),
        },
        handshake: { listen: n.underlayIp, port: 4250, maxEntryTtl: this.opts.maxEntryTtl ?? '1h' },
        auth: {
          reauthAt: this.opts.reauthAt ?? 0.8,
          gcInterval: '1s',
          preauthenticate: this.opts.preauthenticate ?? false,
          ...(this.opts.authMode
            ? {
                mode:
                  typeof this.opts.authMode === 'function' ? this.opts.authMode(n.name) : this.opts.authMode,
              }
            : {}),
        },
        identity: {
          source: 'dev-ca',
          devCa: {
            trustDomain: TRUST_DOMAIN,
            caCert: join(this.caDir, 'ca.crt'),
            caKey: join(this.caDir, 'ca.key'),
            svidTtl: this.opts.svidTtl ?? '1h',
          },
        },
        ...(this.opts.wireguard
          ? {
              wireguard: {
                enabled: true,
                interface: this.wgInterface(n.name),
                address: `10.99.0.${this.topo.nodes.indexOf(n) + 1}/32`,
              },
            }
          : {}),
        inventory: { file: join(this.opts.workDir, 'inventory.yaml') },
        policy: { file: join(this.opts.workDir, 'policy.yaml') },
        audit: { path: join(this.stateDir(n.name), 'audit.db') },
        api: {
          socket: this.apiSocket(n.name),
          ...(this.opts.apiTcp?.(n.name) ? { tcp: this.opts.apiTcp(n.name) } : {}),
        },
        metrics: { listen: '' },
        log: { level: this.opts.logLevel ?? 'info' },
        ...(this.opts.extraConfig?.(n.name) ?? {}),
      };
      writeFileSync(this.configPath(n.name), stringify(config));
    }
  }

  /** Starts meshauthd inside the node namespace and waits until it logs that it is ready. */
  async start(node: string, timeoutMs = 30_000): Promise<DaemonHandle> {
    const env = Object.entries(this.opts.daemonEnv?.(node) ?? {}).map(([k, v]) => `${k}=${v}`);
    const daemon = [
      ...(env.length > 0 ? ['env', ...env] : []),
      'node',
      join(DIST, 'src/cmd/meshauthd.js'),
      '--config',
      this.configPath(node),
    ];
    const caps = this.opts.capabilities;
    const [cmd, ...args] = caps
      ? [
          'setpriv',
          '--inh-caps=-all',
          `--bounding-set=-all${caps.map((c) => `,+${c.toLowerCase()}`).join('')}`,
          '--',
          ...daemon,
        ]
      : daemon;
    const child = this.topo.lab.spawn(this.topo.nodeNs[node]!, cmd!, args);
    const logs: LogLine[] = [];
    let buf = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          logs.push(JSON.parse(line) as LogLine);
        } catch {
          logs.push({ level: 30, msg: line });
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    const handle: DaemonHandle = { node, child, logs, exited };
    this.daemons.set(node, handle);
    const deadline = Date.now() + timeoutMs;
    while (!logs.some((l) => l.event === 'daemon_ready')) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `meshauthd on ${node} exited (${child.exitCode ?? child.signalCode}): ${stderr}\n${summarize(logs)}`,
        );
      }
      if (Date.now() > deadline)
        throw new Error(`meshauthd on ${node} not ready after ${timeoutMs} ms:\n${summarize(logs)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return handle;
  }

  async stop(node: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const d = this.daemons.get(node);
    if (!d) return null;
    d.child.kill(signal);
    const code = await d.exited;
    this.daemons.delete(node);
    return code;
  }

  logs(node: string, event?: string): LogLine[] {
    const d = this.daemons.get(node);
    if (!d) return [];
    return event ? d.logs.filter((l) => l.event === event) : d.logs;
  }

  /** Per-verdict counters of a node, summed over CPUs, read with bpftool from the pinned map. */
  counters(node: string): Record<string, number> {
    const raw = JSON.parse(
      run('bpftool', ['-j', 'map', 'dump', 'pinned', join(this.pinDir(node), 'ma_counters')]),
    ) as Array<{
      key: number | string[];
      values?: Array<{ value: number | string[] }>;
      formatted?: { key: number; values: Array<{ value: number }> };
    }>;
    const out: Record<string, number> = {};
    for (const row of raw) {
      const f = row.formatted;
      if (!f) throw new Error('bpftool: map dump without BTF formatting');
      out[VERDICT_NAMES[f.key] ?? `verdict_${f.key}`] = f.values.reduce((a, v) => a + Number(v.value), 0);
    }
    return out;
  }

  /** Auth map entries of a node (numeric ids), read with bpftool. */
  authEntries(
    node: string,
  ): Array<{ localId: number; remoteId: number; remoteNode: number; expiryBootNs: bigint }> {
    const raw = JSON.parse(
      run('bpftool', ['-j', 'map', 'dump', 'pinned', join(this.pinDir(node), 'ma_auth')]),
    ) as Array<{
      formatted?: {
        key: { local_id: number; remote_id: number; remote_node: number };
        value: { expiry_boot_ns?: number | string; expiry_ns?: number | string };
      };
    }>;
    return raw.map((r) => {
      const f = r.formatted;
      if (!f) throw new Error('bpftool: map dump without BTF formatting');
      return {
        localId: f.key.local_id,
        remoteId: f.key.remote_id,
        remoteNode: f.key.remote_node,
        expiryBootNs: BigInt(f.value.expiry_boot_ns ?? f.value.expiry_ns ?? 0),
      };
    });
  }

  serve(pod: string, port: number): ChildProcess {
    return this.topo.lab.spawn(
      this.topo.podNs[pod]!,
      'node',
      [podTool(), 'serve', '--port', String(port), '--name', pod],
      {
        cgroup: this.podCgroup(pod),
      },
    );
  }

  /** The cgroup a pod's processes run in (its node's, when sock_ops is on). */
  private podCgroup(pod: string): string | undefined {
    return this.cgroups.get(this.topo.pod(pod).node);
  }

  /** Runs pod-tool in a pod namespace without blocking the event loop (daemon logs keep flowing). */
  private podTool(pod: string, args: string[], timeoutMs: number): Promise<string> {
    return new Promise((resolveOut, reject) => {
      const [file, argv] = this.topo.lab.argv(
        this.topo.podNs[pod]!,
        'node',
        [podTool(), ...args],
        this.podCgroup(pod),
      );
      execFile(file, argv, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) =>
        err
          ? reject(new Error(`pod-tool ${args[0]} in ${pod}: ${err.message} ${stderr}`))
          : resolveOut(stdout),
      );
    });
  }

  async connect(
    from: string,
    to: string,
    port: number,
    timeoutMs = 5000,
  ): Promise<{ ok: boolean; ms: number; error?: string; reply?: string }> {
    const out = await this.podTool(
      from,
      ['connect', '--host', this.topo.pod(to).ip, '--port', String(port), '--timeout', String(timeoutMs)],
      timeoutMs + 10_000,
    );
    return JSON.parse(out) as { ok: boolean; ms: number; error?: string; reply?: string };
  }

  async flood(from: string, to: string, ms: number): Promise<number> {
    const out = await this.podTool(
      from,
      ['flood', '--host', this.topo.pod(to).ip, '--port', '9', '--ms', String(ms)],
      ms + 10_000,
    );
    return (JSON.parse(out) as { sent: number }).sent;
  }

  /** Runs the meshauth CLI against a node's API socket; returns stdout. */
  cli(node: string, args: string[]): string {
    return run('node', [join(DIST, 'src/cli/main.js'), '--socket', this.apiSocket(node), ...args]);
  }

  /** Removes every auth entry on every running node (through the API, as an operator would). */
  flushEntries(): void {
    for (const node of this.daemons.keys()) this.cli(node, ['flush', '--all']);
  }

  async stopAll(): Promise<void> {
    for (const node of [...this.daemons.keys()]) await this.stop(node, 'SIGKILL');
  }
}

export function summarize(logs: LogLine[], last = 15): string {
  return logs
    .slice(-last)
    .map((l) => JSON.stringify(l))
    .join('\n');
}

/** Mounts a private bpffs instance at dir (removed by the returned function). */
export function mountBpffs(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  run('mount', ['-t', 'bpf', 'bpf', dir]);
  return () => {
    try {
      run('umount', ['-l', dir]);
    } catch {
      /* already gone */
    }
  };
}
