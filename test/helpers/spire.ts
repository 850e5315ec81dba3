import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import type { KubeApiServer } from './kube-apiserver.js';
import { freePort } from './ports.js';

const execFileP = promisify(execFile);

/** Directory holding spire-server and spire-agent, or undefined when they are not built. */
export function spireBinDir(): string | undefined {
  const dir =
    process.env['MESHAUTH_SPIRE_BIN'] ??
    join(process.env['MESHAUTH_CACHE_DIR'] ?? join(homedir(), '.cache', 'meshauth'), 'spire-v1.15.3', 'bin');
  return existsSync(join(dir, 'spire-server')) && existsSync(join(dir, 'spire-agent')) ? dir : undefined;
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  proc?: () => ChildProcess | undefined,
  logs?: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    const p = proc?.();
    if (p && p.exitCode !== null)
      throw new Error(`${what}: process exited with ${p.exitCode}\n${logs?.() ?? ''}`);
    if (Date.now() > deadline) throw new Error(`${what}: not ready after ${timeoutMs} ms\n${logs?.() ?? ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface SpireEntry {
  spiffeId: string;
  selectors: string[];
  /** Default: the agent's node alias. */
  parentId?: string;
  x509SvidTtlS?: number;
}

export interface SpireLabOptions {
  trustDomain?: string;
  /** SPIFFE IDs listed in every agent's authorized_delegates. */
  authorizedDelegates: string[];
  /** One agent per node name (default ["test-node"]). */
  nodes?: string[];
  /** Agent sync interval (default 1s, for quick propagation of entries and rotations). */
  syncInterval?: string;
}

/** One spire-agent of the lab. */
export interface SpireAgentInfo {
  node: string;
  /** Alias of the agent (its join token's SPIFFE ID): spiffe://<td>/node/<node>. */
  nodeId: string;
  workloadSocket: string;
  adminSocket: string;
}

interface AgentProc extends SpireAgentInfo {
  dir: string;
  joinToken: string;
  proc: ChildProcess | undefined;
  log: string;
}

/**
 * A real spire-server (join_token, sqlite) and one spire-agent per node (join_token, unix
 * workload attestor, admin socket with authorized_delegates) on loopback, in a fresh temporary
 * directory. cleanup() kills every process and removes the directory; it never throws.
 */
export class SpireLab {
  readonly dir: string;
  readonly bin: string;
  readonly trustDomain: string;
  readonly serverSocket: string;
  private server: ChildProcess | undefined;
  private serverLog = '';
  private readonly agents = new Map<string, AgentProc>();
  private readonly opts: SpireLabOptions;
  private port = 0;

  private constructor(dir: string, bin: string, opts: SpireLabOptions) {
    this.dir = dir;
    this.bin = bin;
    this.opts = opts;
    this.trustDomain = opts.trustDomain ?? 'test.local';
    this.serverSocket = join(dir, 'server', 'api.sock');
  }

  static async start(bin: string, opts: SpireLabOptions): Promise<SpireLab> {
    const dir = await mkdtemp(join(tmpdir(), 'meshauth-spire-'));
    const lab = new SpireLab(dir, bin, opts);
    try {
      await lab.startServer();
      for (const node of opts.nodes ?? ['test-node']) {
        await lab.bootstrapAgent(node);
        await lab.startAgent(node);
      }
    } catch (err) {
      await lab.cleanup();
      throw err;
    }
    return lab;
  }

  /** The agent of a node (default: the first). */
  agent(node?: string): SpireAgentInfo {
    const a = node === undefined ? this.agents.values().next().value : this.agents.get(node);
    if (!a) throw new Error(`SpireLab: no agent for node ${node ?? '(first)'}`);
    return { node: a.node, nodeId: a.nodeId, workloadSocket: a.workloadSocket, adminSocket: a.adminSocket };
  }

  /** Admin socket / Workload API socket / node alias of the first agent. */
  get adminSocket(): string {
    return this.agent().adminSocket;
  }
  get workloadSocket(): string {
    return this.agent().workloadSocket;
  }
  get nodeId(): string {
    return this.agent().nodeId;
  }

  private async startServer(): Promise<void> {
    this.port = await freePort();
    const data = join(this.dir, 'server');
    await mkdir(data, { recursive: true, mode: 0o700 });
    const conf = join(this.dir, 'server.conf');
    await writeFile(
      conf,
      `server {
  bind_address = "127.0.0.1"
  bind_port = "${this.port}"
  socket_path = "${this.serverSocket}"
  trust_domain = "${this.trustDomain}"
  data_dir = "${data}"
  log_level = "DEBUG"
  ca_key_type = "ec-p256"
  ca_ttl = "2h"
  default_x509_svid_ttl = "1h"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(data, 'datastore.sqlite3')}"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
`,
    );
    const p = spawn(join(this.bin, 'spire-server'), ['run', '-config', conf], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d: Buffer): void => {
      this.serverLog = (this.serverLog + d.toString()).slice(-20_000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    this.server = p;
    await waitFor(
      'spire-server',
      () => this.ok('spire-server', ['healthcheck', '-socketPath', this.serverSocket]),
      60_000,
      () => this.server,
      () => this.serverLog,
    );
  }

  private async bootstrapAgent(node: string): Promise<void> {
    if (!/^[a-z0-9-]+$/.test(node)) throw new Error(`SpireLab: node name "${node}" must be [a-z0-9-]+`);
    const nodeId = `spiffe://${this.trustDomain}/node/${node}`;
    const out = await this.serverCmd(['token', 'generate', '-spiffeID', nodeId, '-ttl', '3600']);
    const m = /Token:\s*(\S+)/.exec(out);
    if (!m) throw new Error(`spire-server token generate: unexpected output: ${out}`);
    const bundlePath = join(this.dir, 'bootstrap-bundle.pem');
    if (!existsSync(bundlePath)) await writeFile(bundlePath, await this.serverCmd(['bundle', 'show']));
    const dir = join(this.dir, `agent-${node}`);
    const a: AgentProc = {
      node,
      nodeId,
      dir,
      joinToken: m[1]!,
      workloadSocket: join(dir, 'public', 'api.sock'),
      adminSocket: join(dir, 'admin', 'admin.sock'),
      proc: undefined,
      log: '',
    };
    for (const d of ['data', 'public', 'admin']) await mkdir(join(dir, d), { recursive: true, mode: 0o700 });
    await writeFile(
      join(dir, 'agent.conf'),
      `agent {
  data_dir = "${join(dir, 'data')}"
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "${this.port}"
  socket_path = "${a.workloadSocket}"
  admin_socket_path = "${a.adminSocket}"
  trust_domain = "${this.trustDomain}"
  trust_bundle_path = "${bundlePath}"
  authorized_delegates = [${this.opts.authorizedDelegates.map((d) => `"${d}"`).join(', ')}]
  experimental {
    sync_interval = "${this.opts.syncInterval ?? '1s'}"
  }
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "${join(dir, 'data')}"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`,
    );
    this.agents.set(node, a);
  }

  private proc(node: string | undefined): AgentProc {
    const info = this.agent(node);
    return this.agents.get(info.node)!;
  }

  /**
   * Start (or restart) a node's agent (default: the first). The join token is used once;
   * restarts reuse the SVID and key the agent stored in its data directory.
   */
  async startAgent(node?: string): Promise<void> {
    const a = this.proc(node);
    if (a.proc && a.proc.exitCode === null && a.proc.signalCode === null) return;
    const p = spawn(
      join(this.bin, 'spire-agent'),
      ['run', '-config', join(a.dir, 'agent.conf'), '-joinToken', a.joinToken],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const keep = (d: Buffer): void => {
      a.log = (a.log + d.toString()).slice(-20_000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    a.proc = p;
    await waitFor(
      `spire-agent ${a.node}`,
      () => this.ok('spire-agent', ['healthcheck', '-socketPath', a.workloadSocket]),
      60_000,
      () => a.proc,
      () => a.log,
    );
  }

  /** Stop a node's agent (SIGTERM, then SIGKILL after 5 s). */
  async stopAgent(node?: string): Promise<void> {
    const a = this.proc(node);
    await stop(a.proc);
    a.proc = undefined;
  }

  /** Kill a node's agent with `signal` (default SIGKILL: no clean shutdown) and wait until it exited. */
  async killAgent(node?: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const a = this.proc(node);
    const p = a.proc;
    a.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill(signal);
    await exited;
  }

  agentRunning(node?: string): boolean {
    const p = this.proc(node).proc;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  /** Create a registration entry (parent: the first agent's alias unless given); returns its ID. */
  async createEntry(e: SpireEntry): Promise<string> {
    const args = ['entry', 'create', '-parentID', e.parentId ?? this.nodeId, '-spiffeID', e.spiffeId];
    for (const s of e.selectors) args.push('-selector', s);
    if (e.x509SvidTtlS !== undefined) args.push('-x509SVIDTTL', String(e.x509SvidTtlS));
    const out = await this.serverCmd(args);
    const m = /Entry ID\s*:\s*(\S+)/.exec(out);
    if (!m) throw new Error(`spire-server entry create: unexpected output: ${out}`);
    return m[1]!;
  }

  /**
   * Registers `spiffeId` on each of `nodes` for the processes of this test's uid (unix workload
   * attestor, parented to that node's agent): the ID meshauthd, run as this user, presents to the
   * agent as one of its authorized delegates.
   */
  async registerDelegate(spiffeId: string, nodes: string[]): Promise<void> {
    const uid = process.getuid?.() ?? 0;
    for (const node of nodes)
      await this.createEntry({ spiffeId, selectors: [`unix:uid:${uid}`], parentId: this.agent(node).nodeId });
  }

  /** meshauthd's `identity` configuration taking SVIDs from `node`'s agent (Delegated Identity API). */
  delegatedIdentityConfig(node: string): { source: 'spire-delegated'; spire: { adminSocket: string } } {
    return { source: 'spire-delegated', spire: { adminSocket: this.agent(node).adminSocket } };
  }

  async deleteEntry(entryId: string): Promise<void> {
    await this.serverCmd(['entry', 'delete', '-entryID', entryId]);
  }

  /** Run `spire-server <cmd> <sub> -socketPath <server socket> ...rest`; returns stdout. */
  async serverCmd(args: string[]): Promise<string> {
    const [cmd, sub, ...rest] = args;
    const { stdout } = await execFileP(
      join(this.bin, 'spire-server'),
      [cmd!, ...(sub ? [sub] : []), '-socketPath', this.serverSocket, ...rest],
      { timeout: 30_000 },
    );
    return stdout;
  }

  private async ok(binary: string, args: string[]): Promise<boolean> {
    try {
      await execFileP(join(this.bin, binary), args, { timeout: 10_000 });
      return true;
    } catch {
      return false;
    }
  }

  /** The last 20 kB of each process's output (for failure messages). */
  logs(): { server: string; agents: Record<string, string> } {
    return {
      server: this.serverLog,
      agents: Object.fromEntries([...this.agents].map(([n, a]) => [n, a.log])),
    };
  }

  /** Kill every process and remove the directory. Safe to call twice; never throws. */
  async cleanup(): Promise<void> {
    for (const a of this.agents.values()) {
      await stop(a.proc).catch(() => undefined);
      a.proc = undefined;
    }
    await stop(this.server).catch(() => undefined);
    this.server = undefined;
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function stop(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

/** The spire-controller-manager release scripts/build-spire-controller-manager.sh builds. */
export const SPIRE_CONTROLLER_MANAGER_VERSION = '0.6.4';

/**
 * Directory holding bin/spire-controller-manager and crds/*.yaml (MESHAUTH_SPIRE_CM_DIR, else the
 * build script's cache directory), or undefined when it is not built.
 */
export function spireControllerManagerDir(): string | undefined {
  const dir =
    process.env['MESHAUTH_SPIRE_CM_DIR'] ??
    join(
      process.env['MESHAUTH_CACHE_DIR'] ?? join(homedir(), '.cache', 'meshauth'),
      `spire-controller-manager-v${SPIRE_CONTROLLER_MANAGER_VERSION}`,
    );
  return existsSync(join(dir, 'bin', 'spire-controller-manager')) && existsSync(join(dir, 'crds'))
    ? dir
    : undefined;
}

/**
 * Replaces each `from` (a string that must occur exactly once, or a RegExp that must match) in a
 * configuration file's text: the tests run the repository's configuration with only the paths,
 * ports and addresses of this machine changed, and fail loudly when the file drifts from what they
 * rewrite.
 */
export function rewriteConfig(
  text: string,
  what: string,
  edits: ReadonlyArray<[string | RegExp, string]>,
): string {
  let out = text;
  for (const [from, to] of edits) {
    if (typeof from === 'string') {
      const n = out.split(from).length - 1;
      if (n !== 1) throw new Error(`${what}: expected "${from}" exactly once, found it ${n} times`);
      out = out.replace(from, () => to);
    } else {
      if (!from.test(out)) throw new Error(`${what}: no match for ${String(from)}`);
      out = out.replace(from, () => to);
    }
  }
  return out;
}

/** Parsed YAML documents of a file (empty documents left out). */
export function readManifests(path: string): Record<string, unknown>[] {
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS() as Record<string, unknown> | null)
    .filter((o): o is Record<string, unknown> => o !== null);
}

/** One spire-agent of a SpireKubernetesLab: a Pod object in the API plus a local process. */
export interface SpireK8sAgentInfo {
  node: string;
  /** The agent's SPIFFE ID from k8s_psat: spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node UID>. */
  agentId: string;
  /** UID and name of the agent's Pod object (namespace spire), the token's bound object. */
  podName: string;
  podUid: string;
  workloadSocket: string;
  adminSocket: string;
}

interface K8sAgentProc extends SpireK8sAgentInfo {
  dir: string;
  proc: ChildProcess | undefined;
  log: string;
}

export interface SpireKubernetesLabOptions {
  /** The repository's spire/kubernetes directory (server.conf, agent.conf, rbac.yaml, ...). */
  configDir: string;
  /** One agent per node name; each Node object must exist in the API server. */
  nodes: string[];
}

/** The k8s_psat cluster name and trust domain of spire/kubernetes/. */
export const SPIRE_K8S_CLUSTER = 'demo';
export const SPIRE_K8S_TRUST_DOMAIN = 'demo.local';

/**
 * SPIRE as it runs on Kubernetes, against a real API server, with the configuration files of
 * spire/kubernetes/ (only paths, ports and addresses rewritten; the k8s workload attestor, which
 * needs a kubelet, replaced by the unix one):
 *
 * - rbac.yaml applied as is; the server and spire-controller-manager authenticate with a token of
 *   the spire-server service account from the TokenRequest API, so RBAC decides what they may do;
 * - spire-server with the k8s_psat node attestor (TokenReview) and the k8sbundle notifier;
 * - spire-controller-manager with the release's CRDs, webhooks off (ENABLE_WEBHOOKS=false);
 * - per node, a Pod object spire/spire-agent-<node> with spec.nodeName set, a projected token of
 *   the spire-agent service account (audience spire-server, bound to that Pod) and a spire-agent
 *   bootstrapped from the trust bundle the notifier wrote into the spire-bundle ConfigMap.
 *
 * cleanup() kills every process and removes the directory; it never throws. The API server is the
 * caller's.
 */
export class SpireKubernetesLab {
  readonly dir: string;
  readonly serverSocket: string;
  private server: ChildProcess | undefined;
  private serverLog = '';
  private manager: ChildProcess | undefined;
  private managerLog = '';
  private readonly agents = new Map<string, K8sAgentProc>();
  private port = 0;
  private serverKubeconfig = '';

  private constructor(
    dir: string,
    readonly bin: string,
    readonly managerDir: string,
    readonly kube: KubeApiServer,
    readonly opts: SpireKubernetesLabOptions,
  ) {
    this.dir = dir;
    this.serverSocket = join(dir, 'server', 'private', 'api.sock');
  }

  static async start(
    bin: string,
    managerDir: string,
    kube: KubeApiServer,
    opts: SpireKubernetesLabOptions,
  ): Promise<SpireKubernetesLab> {
    const dir = await mkdtemp(join(tmpdir(), 'meshauth-spire-k8s-'));
    const lab = new SpireKubernetesLab(dir, bin, managerDir, kube, opts);
    try {
      await kube.apply(readManifests(join(opts.configDir, 'rbac.yaml')));
      const crds = (await readdir(join(managerDir, 'crds'))).filter((f) => f.endsWith('.yaml')).sort();
      for (const f of crds) {
        const objs = readManifests(join(managerDir, 'crds', f));
        await kube.apply(objs);
        for (const o of objs) await kube.waitForCrd((o['metadata'] as { name: string }).name);
      }
      const token = await kube.serviceAccountToken('spire', 'spire-server');
      lab.serverKubeconfig = (await kube.tokenKubeconfig('spire-server', token)).kubeconfigPath;
      await lab.startServer();
      await lab.startManager();
      for (const node of opts.nodes) await lab.startAgent(node);
    } catch (err) {
      const logs = lab.logs();
      await lab.cleanup();
      const agents = Object.values(logs.agents).map((l) => l.slice(-3000));
      throw new Error(
        [
          (err as Error).message,
          `--- spire-server\n${logs.server.slice(-4000)}`,
          `--- spire-controller-manager\n${logs.manager.slice(-4000)}`,
          `--- agents\n${agents.join('\n---\n')}`,
        ].join('\n'),
        { cause: err },
      );
    }
    return lab;
  }

  private async startServer(): Promise<void> {
    this.port = await freePort();
    const data = join(this.dir, 'server', 'data');
    await mkdir(data, { recursive: true, mode: 0o700 });
    await mkdir(join(this.dir, 'server', 'private'), { recursive: true, mode: 0o700 });
    const conf = join(this.dir, 'server.conf');
    await writeFile(
      conf,
      rewriteConfig(readFileSync(join(this.opts.configDir, 'server.conf'), 'utf8'), 'server.conf', [
        [
          'bind_address = "0.0.0.0"\n  bind_port = "8081"',
          `bind_address = "127.0.0.1"\n  bind_port = "${this.port}"`,
        ],
        ['/tmp/spire-server/private/api.sock', this.serverSocket],
        ['data_dir = "/run/spire/data"', `data_dir = "${data}"`],
        ['"/run/spire/data/datastore.sqlite3"', `"${join(data, 'datastore.sqlite3')}"`],
        ['"/run/spire/data/keys.json"', `"${join(data, 'keys.json')}"`],
        ['log_level = "INFO"', 'log_level = "DEBUG"'],
        ['kube_config_file = ""', `kube_config_file = "${this.serverKubeconfig}"`],
        ['kube_config_file_path = ""', `kube_config_file_path = "${this.serverKubeconfig}"`],
        ['listener_enabled = true', 'listener_enabled = false'],
      ]),
    );
    const p = spawn(join(this.bin, 'spire-server'), ['run', '-config', conf], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d: Buffer): void => {
      this.serverLog = (this.serverLog + d.toString()).slice(-40_000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    this.server = p;
    await waitFor(
      'spire-server',
      () => ok(join(this.bin, 'spire-server'), ['healthcheck', '-socketPath', this.serverSocket]),
      60_000,
      () => this.server,
      () => this.serverLog,
    );
  }

  private async startManager(): Promise<void> {
    const metrics = await freePort();
    const health = await freePort();
    const conf = join(this.dir, 'controller-manager.yaml');
    await writeFile(
      conf,
      rewriteConfig(
        readFileSync(join(this.opts.configDir, 'controller-manager.yaml'), 'utf8'),
        'controller-manager.yaml',
        [
          ['bindAddress: 127.0.0.1:8082', `bindAddress: 127.0.0.1:${metrics}`],
          ['healthProbeBindAddress: 127.0.0.1:8083', `healthProbeBindAddress: 127.0.0.1:${health}`],
          ['/tmp/spire-server/private/api.sock', this.serverSocket],
        ],
      ),
    );
    const p = spawn(join(this.managerDir, 'bin', 'spire-controller-manager'), ['--config', conf], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, KUBECONFIG: this.serverKubeconfig, ENABLE_WEBHOOKS: 'false' },
    });
    const keep = (d: Buffer): void => {
      this.managerLog = (this.managerLog + d.toString()).slice(-40_000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    this.manager = p;
    await waitFor(
      'spire-controller-manager',
      async () => {
        try {
          return (await fetch(`http://127.0.0.1:${health}/readyz`)).ok;
        } catch {
          return false;
        }
      },
      60_000,
      () => this.manager,
      () => this.managerLog,
    );
  }

  /** The trust bundle the k8sbundle notifier published into the spire-bundle ConfigMap. */
  async publishedBundle(timeoutMs = 30_000): Promise<string> {
    let pem = '';
    await waitFor(
      'spire-bundle ConfigMap',
      async () => {
        const cm = await this.kube.json<{ data?: Record<string, string> }>(
          'GET',
          '/api/v1/namespaces/spire/configmaps/spire-bundle',
        );
        pem = cm.data?.['bundle.crt'] ?? '';
        return pem.includes('BEGIN CERTIFICATE');
      },
      timeoutMs,
      () => this.server,
      () => this.serverLog,
    );
    return pem;
  }

  /**
   * A token of a service account from the TokenRequest API for the given audience, bound to a Pod
   * (what the kubelet mounts as a projected service account token).
   */
  async projectedToken(
    namespace: string,
    serviceAccount: string,
    pod: { name: string; uid: string },
    audience: string,
  ): Promise<string> {
    const tr = await this.kube.json<{ status: { token: string } }>(
      'POST',
      `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
      {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: {
            audiences: [audience],
            expirationSeconds: 3600,
            boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid },
          },
        },
      },
    );
    return tr.status.token;
  }

  /** Create a Pod object in namespace spire on a node (no kubelet runs it); returns its UID. */
  async createAgentPod(name: string, node: string, serviceAccount: string): Promise<string> {
    const pod = await this.kube.json<{ metadata: { uid: string } }>('POST', '/api/v1/namespaces/spire/pods', {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, labels: { 'app.kubernetes.io/name': 'spire-agent' } },
        spec: {
          nodeName: node,
          serviceAccountName: serviceAccount,
          automountServiceAccountToken: false,
          containers: [{ name: 'spire-agent', image: 'example.invalid/spire-agent' }],
        },
      },
    });
    return pod.metadata.uid;
  }

  /**
   * Write the agent configuration of a node from agent.conf and a token file. `token` overrides
   * the projected token (for refusal tests); returns the agent's paths.
   */
  private async prepareAgent(node: string, name: string, token: string): Promise<K8sAgentProc> {
    const dir = join(this.dir, `agent-${name}`);
    for (const d of ['data', 'public', 'admin', 'bundle', 'tokens'])
      await mkdir(join(dir, d), { recursive: true, mode: 0o700 });
    const tokenPath = join(dir, 'tokens', 'spire-agent');
    await writeFile(tokenPath, token, { mode: 0o600 });
    const bundlePath = join(dir, 'bundle', 'bundle.crt');
    await writeFile(bundlePath, await this.publishedBundle());
    const a: K8sAgentProc = {
      node,
      agentId: '',
      podName: '',
      podUid: '',
      dir,
      workloadSocket: join(dir, 'public', 'api.sock'),
      adminSocket: join(dir, 'admin', 'admin.sock'),
      proc: undefined,
      log: '',
    };
    await writeFile(
      join(dir, 'agent.conf'),
      rewriteConfig(readFileSync(join(this.opts.configDir, 'agent.conf'), 'utf8'), 'agent.conf', [
        ['data_dir = "/run/spire"', `data_dir = "${join(dir, 'data')}"`],
        ['log_level = "INFO"', 'log_level = "DEBUG"'],
        ['server_address = "spire-server.spire.svc"', 'server_address = "127.0.0.1"'],
        ['server_port = "8081"', `server_port = "${this.port}"`],
        ['"/run/spire/bundle/bundle.crt"', `"${bundlePath}"`],
        ['"/run/spire/agent-sockets/api.sock"', `"${a.workloadSocket}"`],
        ['"/run/spire/admin/admin.sock"', `"${a.adminSocket}"`],
        ['"/var/run/secrets/tokens/spire-agent"', `"${tokenPath}"`],
        // No kubelet here: the caller (meshauthd) is attested by its uid instead of its pod.
        [
          / {2}WorkloadAttestor "k8s" \{\n[\s\S]*?\n {2}\}\n/,
          '  WorkloadAttestor "unix" {\n    plugin_data {}\n  }\n',
        ],
        ['listener_enabled = true', 'listener_enabled = false'],
      ]),
    );
    return a;
  }

  private spawnAgent(a: K8sAgentProc): ChildProcess {
    const p = spawn(join(this.bin, 'spire-agent'), ['run', '-config', join(a.dir, 'agent.conf')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d: Buffer): void => {
      a.log = (a.log + d.toString()).slice(-40_000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    a.proc = p;
    return p;
  }

  /** Create the agent's Pod, its projected token, and start it; resolves once it is healthy. */
  private async startAgent(node: string): Promise<void> {
    if (!/^[a-z0-9-]+$/.test(node))
      throw new Error(`SpireKubernetesLab: node name "${node}" must be [a-z0-9-]+`);
    const podName = `spire-agent-${node}`;
    const podUid = await this.createAgentPod(podName, node, 'spire-agent');
    const token = await this.projectedToken(
      'spire',
      'spire-agent',
      { name: podName, uid: podUid },
      'spire-server',
    );
    const a = await this.prepareAgent(node, node, token);
    const nodeObj = await this.kube.json<{ metadata: { uid: string } }>('GET', `/api/v1/nodes/${node}`);
    a.agentId = `spiffe://${SPIRE_K8S_TRUST_DOMAIN}/spire/agent/k8s_psat/${SPIRE_K8S_CLUSTER}/${nodeObj.metadata.uid}`;
    a.podName = podName;
    a.podUid = podUid;
    this.agents.set(node, a);
    this.spawnAgent(a);
    await waitFor(
      `spire-agent ${node}`,
      () => ok(join(this.bin, 'spire-agent'), ['healthcheck', '-socketPath', a.workloadSocket]),
      60_000,
      () => a.proc,
      () => a.log,
    );
  }

  /**
   * Run one more agent on `node` with the given token until the server answers its node
   * attestation with an error (the agent logs "Failed to retrieve attestation result" and retries,
   * or "Agent crashed" and exits), or it exits, or `timeoutMs` passes; then stop it. Returns whether it was refused and
   * its log.
   */
  async tryAgent(
    node: string,
    name: string,
    token: string,
    timeoutMs = 30_000,
  ): Promise<{ refused: boolean; log: string }> {
    const a = await this.prepareAgent(node, name, token);
    const p = this.spawnAgent(a);
    // A retryable refusal (codes.Internal) is logged and retried; PermissionDenied ends the agent.
    const refusedNow = (): boolean =>
      a.log.includes('Failed to retrieve attestation result') || a.log.includes('Agent crashed');
    const deadline = Date.now() + timeoutMs;
    while (!refusedNow() && p.exitCode === null && p.signalCode === null && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    await stop(p);
    await rm(a.dir, { recursive: true, force: true });
    return { refused: refusedNow(), log: a.log };
  }

  /** The agent of a node. */
  agent(node: string): SpireK8sAgentInfo {
    const a = this.agents.get(node);
    if (!a) throw new Error(`SpireKubernetesLab: no agent for node ${node}`);
    return {
      node: a.node,
      agentId: a.agentId,
      podName: a.podName,
      podUid: a.podUid,
      workloadSocket: a.workloadSocket,
      adminSocket: a.adminSocket,
    };
  }

  /** Run `spire-server <cmd> <sub> -socketPath <server socket> ...rest`; returns stdout. */
  async serverCmd(args: string[]): Promise<string> {
    const [cmd, sub, ...rest] = args;
    const { stdout } = await execFileP(
      join(this.bin, 'spire-server'),
      [cmd!, ...(sub ? [sub] : []), '-socketPath', this.serverSocket, ...rest],
      { timeout: 30_000 },
    );
    return stdout;
  }

  /** The registration entries of the server (spire-server entry show -output json). */
  async entries(): Promise<Array<{ id: string; spiffeId: string; parentId: string; selectors: string[] }>> {
    type Id = { trust_domain: string; path: string };
    const out = JSON.parse(await this.serverCmd(['entry', 'show', '-output', 'json'])) as {
      entries?: Array<{
        id: string;
        spiffe_id: Id;
        parent_id: Id;
        selectors: Array<{ type: string; value: string }>;
      }>;
    };
    const str = (i: Id): string => `spiffe://${i.trust_domain}${i.path}`;
    return (out.entries ?? []).map((e) => ({
      id: e.id,
      spiffeId: str(e.spiffe_id),
      parentId: str(e.parent_id),
      selectors: e.selectors.map((s) => `${s.type}:${s.value}`).sort(),
    }));
  }

  /** SPIFFE IDs of the attested agents (spire-server agent list -output json). */
  async agentIds(): Promise<string[]> {
    type Id = { trust_domain: string; path: string };
    const out = JSON.parse(await this.serverCmd(['agent', 'list', '-output', 'json'])) as {
      agents?: Array<{ id: Id; attestation_type: string }>;
    };
    return (out.agents ?? []).map((a) => `spiffe://${a.id.trust_domain}${a.id.path}`).sort();
  }

  /** The last 40 kB of each process's output (for failure messages). */
  logs(): { server: string; manager: string; agents: Record<string, string> } {
    return {
      server: this.serverLog,
      manager: this.managerLog,
      agents: Object.fromEntries([...this.agents].map(([n, a]) => [n, a.log])),
    };
  }

  /** Kill every process and remove the directory. Safe to call twice; never throws. */
  async cleanup(): Promise<void> {
    for (const a of this.agents.values()) {
      await stop(a.proc).catch(() => undefined);
      a.proc = undefined;
    }
    await stop(this.manager).catch(() => undefined);
    this.manager = undefined;
    await stop(this.server).catch(() => undefined);
    this.server = undefined;
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function ok(file: string, args: string[]): Promise<boolean> {
  try {
    await execFileP(file, args, { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}
