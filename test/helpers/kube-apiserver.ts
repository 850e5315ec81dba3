import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { EKU, makeCert, makeRootCa, type TestCert } from './certs.js';
import { freePort } from './ports.js';

/** The Kubernetes release scripts/build-kubernetes.sh builds. */
export const KUBERNETES_VERSION = '1.37.2';

/**
 * Directory holding etcd, kube-apiserver and kubectl (MESHAUTH_KUBE_BIN, else the build script's
 * cache directory), or undefined when they are not built.
 */
export function kubeBinDir(): string | undefined {
  const dir =
    process.env['MESHAUTH_KUBE_BIN'] ??
    join(
      process.env['MESHAUTH_CACHE_DIR'] ?? join(homedir(), '.cache', 'meshauth'),
      `kubernetes-v${KUBERNETES_VERSION}`,
      'bin',
    );
  return ['etcd', 'kube-apiserver', 'kubectl'].every((b) => existsSync(join(dir, b))) ? dir : undefined;
}

function alive(p: ChildProcess | undefined): p is ChildProcess {
  return p !== undefined && p.exitCode === null && p.signalCode === null;
}

async function stop(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!alive(p)) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill(signal);
  const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

/** A response of a raw HTTPS request to the API server. */
export interface KubeHttpResponse {
  status: number;
  body: string;
}

/** Who a request is made as: a client certificate, a bearer token, or nobody. */
export type KubeCredential =
  { kind: 'cert'; cert: TestCert } | { kind: 'token'; token: string } | { kind: 'anonymous' };

/** A user with a client certificate signed by the API server's client CA. */
export interface KubeClientUser {
  /** The user name (certificate CN). */
  name: string;
  /** The groups (certificate O attributes). */
  groups: string[];
  cert: TestCert;
  /** A kubeconfig for this user, as YAML. */
  kubeconfigYaml: string;
  /** The same kubeconfig, written into the lab directory. */
  kubeconfigPath: string;
  /** The same kubeconfig, loaded. */
  kubeConfig: KubeConfig;
}

export interface KubeApiServerOptions {
  /** Extra kube-apiserver flags, e.g. ["--feature-gates=..."]. */
  extraArgs?: string[];
  /**
   * Run etcd and kube-apiserver inside this network namespace (`ip netns exec`), e.g. a
   * control-plane namespace that node namespaces are linked to. Default: the caller's namespace.
   */
  netns?: string;
  /**
   * The IPv4 address etcd and kube-apiserver listen on (and the serving certificate names); it
   * must be reachable from the caller. Default 127.0.0.1.
   */
  address?: string;
}

/**
 * A real etcd and kube-apiserver on loopback (or on `address`, inside `netns`) in a fresh
 * temporary directory: client-certificate authentication (its own CA), service-account tokens
 * (TokenRequest/TokenReview, issuer https://kubernetes.default.svc), RBAC authorization,
 * anonymous requests refused, no admission plugin that needs a controller manager (ServiceAccount
 * is disabled). The API server can be stopped and started again while etcd keeps the data.
 * close() stops both and removes the directory; it is idempotent and never throws.
 */
export class KubeApiServer {
  readonly dir: string;
  readonly bin: string;
  /** https://<address>:<port> */
  url = '';
  /** The address both processes listen on. */
  readonly address: string;
  ca!: TestCert;
  admin!: KubeClientUser;
  private etcd: ChildProcess | undefined;
  private apiserver: ChildProcess | undefined;
  private etcdLog = '';
  private apiserverLog = '';
  private etcdUrl = '';
  private port = 0;
  private servingCert!: TestCert;
  private readonly opts: KubeApiServerOptions;
  private closed = false;

  private constructor(dir: string, bin: string, opts: KubeApiServerOptions) {
    this.dir = dir;
    this.bin = bin;
    this.opts = opts;
    this.address = opts.address ?? '127.0.0.1';
  }

  /** Spawns one of the binaries, inside the namespace when there is one. */
  private spawnBin(name: string, args: string[]): ChildProcess {
    const file = join(this.bin, name);
    // `ip netns exec` execs the binary in place: the child's pid is the server's.
    const [cmd, argv] = this.opts.netns
      ? ['ip', ['netns', 'exec', this.opts.netns, file, ...args]]
      : [file, args];
    return spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Start etcd and kube-apiserver; resolves once /readyz answers ok. */
  static async start(bin: string, opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const dir = await mkdtemp(join(tmpdir(), 'meshauth-kube-'));
    const lab = new KubeApiServer(dir, bin, opts);
    try {
      await lab.writePki();
      await lab.startEtcd();
      // Free here; in a namespace of its own every port is free anyway.
      lab.port = await freePort();
      lab.url = `https://${lab.address}:${lab.port}`;
      lab.admin = await lab.clientUser('meshauth-test-admin', ['system:masters']);
      await lab.startApiServer();
    } catch (err) {
      await lab.close();
      throw err;
    }
    return lab;
  }

  private async writePki(): Promise<void> {
    const pki = join(this.dir, 'pki');
    await mkdir(pki, { recursive: true, mode: 0o700 });
    this.ca = await makeRootCa('kubernetes.test', { subject: 'CN=meshauth-test-kubernetes-ca' });
    this.servingCert = await makeCert({
      issuer: this.ca,
      subject: 'CN=kube-apiserver',
      dns: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
      ips: [...new Set(['127.0.0.1', this.address])],
    });
    const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(join(pki, 'ca.crt'), this.ca.pem);
    await writeFile(join(pki, 'serving.crt'), this.servingCert.pem);
    await writeFile(join(pki, 'serving.key'), this.servingCert.keyPem, { mode: 0o600 });
    await writeFile(join(pki, 'sa.key'), sa.privateKey.export({ format: 'pem', type: 'pkcs8' }), {
      mode: 0o600,
    });
    await writeFile(join(pki, 'sa.pub'), sa.publicKey.export({ format: 'pem', type: 'spki' }));
  }

  private async startEtcd(): Promise<void> {
    const client = await freePort();
    const peer = await freePort();
    this.etcdUrl = `http://${this.address}:${client}`;
    const peerUrl = `http://${this.address}:${peer}`;
    const p = this.spawnBin('etcd', [
      '--name=default',
      `--data-dir=${join(this.dir, 'etcd')}`,
      `--listen-client-urls=${this.etcdUrl}`,
      `--advertise-client-urls=${this.etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    const keep = (d: Buffer): void => {
      this.etcdLog = (this.etcdLog + d.toString()).slice(-20_000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    this.etcd = p;
    await this.waitFor(
      'etcd',
      () => this.etcdHealthy(),
      30_000,
      p,
      () => this.etcdLog,
    );
  }

  private async etcdHealthy(): Promise<boolean> {
    try {
      const res = await fetch(`${this.etcdUrl}/health`);
      return res.ok && ((await res.json()) as { health?: string }).health === 'true';
    } catch {
      return false;
    }
  }

  /** Start the API server (again) against the running etcd; resolves once /readyz is ok. */
  async startApiServer(): Promise<void> {
    if (this.closed) throw new Error('KubeApiServer: closed');
    if (alive(this.apiserver)) return;
    const pki = join(this.dir, 'pki');
    this.apiserverLog = '';
    const p = this.spawnBin('kube-apiserver', [
      `--etcd-servers=${this.etcdUrl}`,
      `--bind-address=${this.address}`,
      `--advertise-address=${this.address}`,
      // No kubernetes Service endpoints for a loopback address (the reconciler refuses it).
      '--endpoint-reconciler-type=none',
      `--secure-port=${this.port}`,
      `--cert-dir=${join(this.dir, 'apiserver-certs')}`,
      `--tls-cert-file=${join(pki, 'serving.crt')}`,
      `--tls-private-key-file=${join(pki, 'serving.key')}`,
      `--client-ca-file=${join(pki, 'ca.crt')}`,
      '--anonymous-auth=false',
      '--authorization-mode=RBAC',
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      '--profiling=false',
      '--disable-admission-plugins=ServiceAccount',
      ...(this.opts.extraArgs ?? []),
    ]);
    const keep = (d: Buffer): void => {
      this.apiserverLog = (this.apiserverLog + d.toString()).slice(-40_000);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    this.apiserver = p;
    await this.waitFor(
      'kube-apiserver',
      async () => {
        try {
          const r = await this.request('GET', '/readyz');
          return r.status === 200;
        } catch {
          return false;
        }
      },
      90_000,
      p,
      () => this.apiserverLog,
    );
  }

  /**
   * Stop the API server only (`signal`, default SIGTERM: a graceful shutdown; SIGKILL after 5 s);
   * etcd and its data stay.
   */
  async stopApiServer(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stop(this.apiserver, signal);
    this.apiserver = undefined;
  }

  apiServerRunning(): boolean {
    return alive(this.apiserver);
  }

  /** Process ids of the running etcd and kube-apiserver. */
  pids(): number[] {
    return [this.etcd, this.apiserver].filter(alive).map((p) => p.pid!);
  }

  private async waitFor(
    what: string,
    check: () => Promise<boolean>,
    timeoutMs: number,
    proc: ChildProcess,
    logs: () => string,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await check()) return;
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`${what}: process exited (${proc.exitCode ?? proc.signalCode})\n${logs()}`);
      if (Date.now() > deadline) throw new Error(`${what}: not ready after ${timeoutMs} ms\n${logs()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * A user authenticated by a client certificate (CN = name, O = each group) and a kubeconfig
   * for it. What the user may do is up to RBAC.
   */
  async clientUser(name: string, groups: string[] = []): Promise<KubeClientUser> {
    const subject = [`CN=${name}`, ...groups.map((g) => `O=${g}`)].join(', ');
    const cert = await makeCert({ issuer: this.ca, subject, eku: [EKU.clientAuth] });
    const kubeconfigYaml = this.kubeconfigYaml(name, {
      'client-certificate-data': Buffer.from(cert.pem).toString('base64'),
      'client-key-data': Buffer.from(cert.keyPem).toString('base64'),
    });
    return { name, groups, cert, ...(await this.saveKubeconfig(name, kubeconfigYaml)) };
  }

  /** A kubeconfig that authenticates with a bearer token (e.g. a service-account token). */
  async tokenKubeconfig(
    label: string,
    token: string,
  ): Promise<{ kubeconfigYaml: string; kubeconfigPath: string; kubeConfig: KubeConfig }> {
    return this.saveKubeconfig(label, this.kubeconfigYaml(label, { token }));
  }

  private kubeconfigYaml(user: string, auth: Record<string, string>): string {
    const ca = Buffer.from(this.ca.pem).toString('base64');
    const authLines = Object.entries(auth)
      .map(([k, v]) => `      ${k}: ${v}`)
      .join('\n');
    return `apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: ${this.url}
      certificate-authority-data: ${ca}
users:
  - name: ${JSON.stringify(user)}
    user:
${authLines}
contexts:
  - name: test
    context:
      cluster: test
      user: ${JSON.stringify(user)}
current-context: test
`;
  }

  private async saveKubeconfig(
    label: string,
    yaml: string,
  ): Promise<{ kubeconfigYaml: string; kubeconfigPath: string; kubeConfig: KubeConfig }> {
    const dir = join(this.dir, 'kubeconfigs');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const kubeconfigPath = join(dir, `${label.replace(/[^A-Za-z0-9._-]/g, '_')}.yaml`);
    await writeFile(kubeconfigPath, yaml, { mode: 0o600 });
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(yaml);
    return { kubeconfigYaml: yaml, kubeconfigPath, kubeConfig };
  }

  /**
   * A raw HTTPS request to the API server (default: as the admin). JSON bodies are sent with
   * `application/json` unless `contentType` says otherwise (e.g. a merge patch).
   */
  async request(
    method: string,
    path: string,
    opts: { as?: KubeCredential; body?: unknown; contentType?: string } = {},
  ): Promise<KubeHttpResponse> {
    const as: KubeCredential = opts.as ?? { kind: 'cert', cert: this.admin.cert };
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    if (as.kind === 'token') headers['authorization'] = `Bearer ${as.token}`;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.address,
          port: this.port,
          path,
          method,
          headers,
          ca: this.ca.pem,
          ...(as.kind === 'cert' ? { cert: as.cert.pem, key: as.cert.keyPem } : {}),
          timeout: 15_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Like request(), but throws unless the status is 2xx; returns the parsed JSON body. */
  async json<T = Record<string, unknown>>(
    method: string,
    path: string,
    opts: { as?: KubeCredential; body?: unknown; contentType?: string } = {},
  ): Promise<T> {
    let r = await this.request(method, path, opts);
    // Right after a CRD is established its storage may still be initialising: 429, Retry-After.
    for (let i = 0; r.status === 429 && i < 20; i++) {
      await new Promise((res) => setTimeout(res, 250));
      r = await this.request(method, path, opts);
    }
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: HTTP ${r.status}: ${r.body}`);
    return JSON.parse(r.body) as T;
  }

  /** Create (as the admin) each of these objects (parsed manifests), in order. */
  async apply(objects: readonly Record<string, unknown>[]): Promise<void> {
    for (const o of objects) await this.json('POST', collectionPath(o), { body: o });
  }

  /** Wait until a CRD reports Established=True (and NamesAccepted=True). */
  async waitForCrd(name: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const crd = await this.json<{ status?: { conditions?: { type: string; status: string }[] } }>(
        'GET',
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
      );
      const ok = (t: string): boolean =>
        crd.status?.conditions?.some((c) => c.type === t && c.status === 'True') ?? false;
      if (ok('Established') && ok('NamesAccepted')) return;
      if (Date.now() > deadline) throw new Error(`CRD ${name}: not Established after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Create a ServiceAccount if it does not exist and return a token for it from the TokenRequest
   * API. `boundPod` binds the token to that pod (which must exist); the API server then adds the
   * pod's node to the token's user info (extra authentication.kubernetes.io/node-name).
   */
  async serviceAccountToken(
    namespace: string,
    name: string,
    opts: { boundPod?: { name: string; uid: string }; expirationSeconds?: number } = {},
  ): Promise<string> {
    await this.ensureNamespace(namespace);
    const sa = await this.request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, {
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } },
    });
    if (sa.status !== 201 && sa.status !== 409)
      throw new Error(`create ServiceAccount: HTTP ${sa.status}: ${sa.body}`);
    const tr = await this.json<{ status: { token: string } }>(
      'POST',
      `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
      {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: {
            audiences: ['https://kubernetes.default.svc'],
            expirationSeconds: opts.expirationSeconds ?? 3600,
            ...(opts.boundPod
              ? {
                  boundObjectRef: {
                    apiVersion: 'v1',
                    kind: 'Pod',
                    name: opts.boundPod.name,
                    uid: opts.boundPod.uid,
                  },
                }
              : {}),
          },
        },
      },
    );
    return tr.status.token;
  }

  /** Create a namespace unless it exists. */
  async ensureNamespace(name: string): Promise<void> {
    const r = await this.request('POST', '/api/v1/namespaces', {
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } },
    });
    if (r.status !== 201 && r.status !== 409)
      throw new Error(`create Namespace ${name}: HTTP ${r.status}: ${r.body}`);
  }

  /** The last output of each process (for failure messages). */
  logs(): { etcd: string; apiserver: string } {
    return { etcd: this.etcdLog, apiserver: this.apiserverLog };
  }

  /** Stop both processes and remove the directory. Safe to call twice; never throws. */
  async close(): Promise<void> {
    this.closed = true;
    await stop(this.apiserver).catch(() => undefined);
    this.apiserver = undefined;
    await stop(this.etcd).catch(() => undefined);
    this.etcd = undefined;
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The REST collection path an object is created under (core, grouped, namespaced or not). */
export function collectionPath(o: Record<string, unknown>): string {
  const apiVersion = String(o['apiVersion']);
  const kind = String(o['kind']);
  const ns = (o['metadata'] as { namespace?: string } | undefined)?.namespace;
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const plural = PLURALS[kind] ?? `${kind.toLowerCase()}s`;
  return ns ? `${base}/namespaces/${ns}/${plural}` : `${base}/${plural}`;
}

const PLURALS: Record<string, string> = {
  MutualAuthPolicy: 'mutualauthpolicies',
  ValidatingAdmissionPolicy: 'validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: 'validatingadmissionpolicybindings',
};
