import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Directory holding spire-server and spire-agent, or undefined when they are not built. */
export function spireBinDir(): string | undefined {
  const dir =
    process.env['MESHAUTH_SPIRE_BIN'] ??
    join(process.env['MESHAUTH_CACHE_DIR'] ?? join(homedir(), '.cache', 'meshauth'), 'spire-v1.15.3', 'bin');
  return existsSync(join(dir, 'spire-server')) && existsSync(join(dir, 'spire-agent')) ? dir : undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
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
