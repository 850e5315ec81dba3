/**
 * SPIRE on Kubernetes, with the configuration of spire/kubernetes/, against a real API server:
 * spire-server and one spire-agent per node attest through k8s_psat (projected service account
 * tokens from the TokenRequest API, validated by the server through TokenReview), and
 * spire-controller-manager creates the registration entries of the pods from a ClusterSPIFFEID.
 * Two meshauthd in Kubernetes mode (inventory and policy from the API) get the SVIDs of the pods on
 * their node over the agent's Delegated Identity API and authenticate a pair with them.
 *
 * No kubelet runs here: pods are API objects whose status the test writes, and meshauthd, a plain
 * process, is attested by the agent's unix workload attestor (a ClusterStaticEntry gives its uid
 * the authorized delegate's SPIFFE ID) instead of the k8s one.
 */
import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize, type Cluster } from '../../demo/cluster.js';
import { NODES, PODS } from '../../demo/topology.js';
import { MUTUAL_AUTH_POLICY } from '../../src/kubernetes/index.js';
import { KubeApiServer, kubeBinDir } from '../helpers/kube-apiserver.js';
import {
  readManifests,
  SPIRE_K8S_TRUST_DOMAIN,
  SpireKubernetesLab,
  spireBinDir,
  spireControllerManagerDir,
} from '../helpers/spire.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

const kubeBin = kubeBinDir();
const spireBin = spireBinDir();
const managerDir = spireControllerManagerDir();
const CONFIG_DIR = fileURLToPath(new URL('../../spire/kubernetes', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The agents' authorized delegate (spire/kubernetes/agent.conf). */
const MESHAUTHD = `spiffe://${SPIRE_K8S_TRUST_DOMAIN}/ns/meshauth/sa/meshauthd`;

if (!kubeBin || !spireBin || !managerDir) {
  console.warn(
    'SPIRE-on-Kubernetes e2e skipped: needs scripts/build-kubernetes.sh, scripts/build-spire.sh and scripts/build-spire-controller-manager.sh',
  );
}

/**
 * Carries the API server's port into a network namespace: nothing routes from the node
 * namespaces to the host's loopback, so a process in the namespace listens on 127.0.0.1:<port>
 * there and forwards each connection over a unix socket to the API server (TLS passes through,
 * the kubeconfig stays the same).
 */
class ApiRelay {
  private readonly sockets = new Set<Socket>();
  private readonly children: ChildProcess[] = [];
  private closed = false;
  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  static async start(port: number, path: string): Promise<ApiRelay> {
    const server = createServer((c) => {
      const up = connect(port, '127.0.0.1');
      for (const s of [c, up]) {
        relay.sockets.add(s);
        s.once('close', () => relay.sockets.delete(s));
        s.on('error', () => {
          c.destroy();
          up.destroy();
        });
      }
      c.pipe(up).pipe(c);
    });
    const relay = new ApiRelay(server, path);
    server.listen(path);
    await once(server, 'listening');
    return relay;
  }

  /** Listen on 127.0.0.1:<port> inside a namespace, forwarding to this relay's unix socket. */
  async into(spawnIn: (cmd: string, args: string[]) => ChildProcess, port: number): Promise<void> {
    const js = `const net = require('node:net');
const [port, path] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(path);
  const end = () => { c.destroy(); u.destroy(); };
  c.on('error', end); u.on('error', end);
  c.pipe(u).pipe(c);
}).listen(Number(port), '127.0.0.1', () => console.log('listening'));`;
    const child = spawnIn(process.execPath, ['-e', js, String(port), this.path]);
    this.children.push(child);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('listening')) resolve();
      });
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      child.once('exit', (code) => reject(new Error(`API relay exited (${code}): ${out}`)));
    });
  }

  /** Stop the forwarders and the listener; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.children) c.kill('SIGKILL');
    for (const s of this.sockets) s.destroy();
    this.server.close();
    rmSync(this.path, { force: true });
  }
}

describe.skipIf(!kubeBin || !spireBin || !managerDir)(
  'SPIRE on Kubernetes (k8s_psat, spire-controller-manager) with meshauthd in Kubernetes mode',
  () => {
    let kube: KubeApiServer | undefined;
    let spire: SpireKubernetesLab | undefined;
    let env: DemoCluster | undefined;
    let relay: ApiRelay | undefined;
    let cluster: Cluster;
    const podUids = new Map<string, string>();

    beforeAll(async () => {
      kube = await KubeApiServer.start(kubeBin!);
      const k = kube;
      for (const n of NODES) {
        await k.json('POST', '/api/v1/nodes', {
          body: {
            apiVersion: 'v1',
            kind: 'Node',
            metadata: { name: n.name },
            spec: { podCIDRs: [n.podCidr] },
          },
        });
        await k.json('PATCH', `/api/v1/nodes/${n.name}/status`, {
          contentType: 'application/merge-patch+json',
          body: { status: { addresses: [{ type: 'InternalIP', address: n.underlayIp }] } },
        });
      }
      spire = await SpireKubernetesLab.start(spireBin!, managerDir!, k, {
        configDir: CONFIG_DIR,
        nodes: NODES.map((n) => n.name),
      });
      const lab = spire;

      // Registration from the API: the repository's ClusterSPIFFEID for the pods, and (instead of
      // the meshauthd pods it would also cover) meshauthd's uid on each node's agent.
      await k.apply(readManifests(join(CONFIG_DIR, 'clusterspiffeid.yaml')));
      for (const n of NODES) {
        await k.json('POST', '/apis/spire.spiffe.io/v1alpha1/clusterstaticentries', {
          body: {
            apiVersion: 'spire.spiffe.io/v1alpha1',
            kind: 'ClusterStaticEntry',
            metadata: { name: `meshauthd-${n.name}` },
            spec: {
              spiffeID: MESHAUTHD,
              parentID: lab.agent(n.name).agentId,
              selectors: [`unix:uid:${process.getuid?.() ?? 0}`],
            },
          },
        });
      }
      await k.ensureNamespace('demo');
      for (const p of PODS) {
        const pod = await k.json<{ metadata: { uid: string } }>('POST', '/api/v1/namespaces/demo/pods', {
          body: {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { name: p.name },
            spec: {
              nodeName: p.node,
              serviceAccountName: p.name,
              automountServiceAccountToken: false,
              containers: [{ name: 'app', image: 'example.invalid/app' }],
            },
          },
        });
        podUids.set(p.name, pod.metadata.uid);
        await k.json('PATCH', `/api/v1/namespaces/demo/pods/${p.name}/status`, {
          contentType: 'application/merge-patch+json',
          body: { status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] } },
        });
      }

      // meshauthd's own API identity: the chart's service account and ClusterRole, nothing more.
      await k.ensureNamespace('meshauth');
      await k.apply(readManifests(join(REPO, 'deploy/rbac/meshauthd-rbac.yaml')));
      await k.apply(readManifests(join(REPO, 'deploy/crds/meshauth.io_mutualauthpolicies.yaml')));
      await k.waitForCrd(MUTUAL_AUTH_POLICY.crdName);
      await k.json('POST', `/apis/${MUTUAL_AUTH_POLICY.apiVersion}/${MUTUAL_AUTH_POLICY.plural}`, {
        body: {
          apiVersion: MUTUAL_AUTH_POLICY.apiVersion,
          kind: MUTUAL_AUTH_POLICY.kind,
          metadata: { name: 'web' },
          spec: {
            mode: 'enforce',
            rules: [
              {
                name: 'web-to-db',
                from: { namespace: 'demo', serviceAccount: 'web' },
                to: { namespace: 'demo', serviceAccount: 'db' },
              },
              {
                name: 'web-to-cache',
                from: { namespace: 'demo', serviceAccount: 'web' },
                to: { namespace: 'demo', serviceAccount: 'cache' },
              },
            ],
          },
        },
      });
      const token = await k.serviceAccountToken('meshauth', 'meshauthd');
      const kubeconfig = (await k.tokenKubeconfig('meshauthd', token)).kubeconfigPath;

      env = await startDemoCluster('spk8s', {
        rules: [],
        startOrder: [],
        extraConfig: (node) => ({
          inventory: { source: 'kubernetes' },
          policy: { source: 'kubernetes' },
          kubernetes: { kubeconfig, trustDomain: SPIRE_K8S_TRUST_DOMAIN },
          identity: { source: 'spire-delegated', spire: { adminSocket: lab.agent(node).adminSocket } },
        }),
      });
      cluster = env.cluster;
      const apiPort = Number(new URL(k.url).port);
      relay = await ApiRelay.start(apiPort, join(tmpdir(), `meshauth-spk8s-api-${process.pid}.sock`));
      for (const n of NODES) {
        await relay.into((cmd, args) => env!.lab.spawn(cluster.topo.nodeNs[n.name]!, cmd, args), apiPort);
      }
    }, 240_000);

    afterAll(async () => {
      await env?.teardown();
      relay?.close();
      await spire?.cleanup();
      await kube?.close();
    });

    it('attests each agent with k8s_psat: its Pod-bound projected token, checked through TokenReview', async () => {
      const ids = NODES.map((n) => spire!.agent(n.name).agentId);
      for (const i of ids)
        expect(i).toMatch(/^spiffe:\/\/demo\.local\/spire\/agent\/k8s_psat\/demo\/[0-9a-f-]{36}$/);
      expect(await spire!.agentIds()).toEqual([...ids].sort());
    });

    it('refuses an agent whose token has another audience or another service account', async () => {
      const lab = spire!;
      const k = kube!;
      // A token of the right service account, bound to a Pod, but for the API server's audience.
      const uid = await lab.createAgentPod('spire-agent-wrong-audience', 'node-a', 'spire-agent');
      const wrongAudience = await lab.projectedToken(
        'spire',
        'spire-agent',
        { name: 'spire-agent-wrong-audience', uid },
        'https://kubernetes.default.svc',
      );
      const a = await lab.tryAgent('node-a', 'wrong-audience', wrongAudience);
      expect(a.refused, a.log).toBe(true);
      expect(a.log).toMatch(/unable to validate token with TokenReview API/);
      expect(a.log).toMatch(/is invalid for the target audiences \[\\"spire-server\\"\]/);
      // The audience spire-server, but a service account the server does not allow.
      await k.serviceAccountToken('spire', 'intruder');
      const uid2 = await lab.createAgentPod('intruder', 'node-a', 'intruder');
      const intruder = await lab.projectedToken(
        'spire',
        'intruder',
        { name: 'intruder', uid: uid2 },
        'spire-server',
      );
      const b = await lab.tryAgent('node-a', 'intruder', intruder);
      expect(b.refused, b.log).toBe(true);
      expect(b.log).toMatch(/spire:intruder\\" is not an allowed service account/);
      expect(await lab.agentIds()).toHaveLength(NODES.length);
    }, 90_000);

    it('creates one registration entry per pod from the ClusterSPIFFEID, parented to the agent of its node', async () => {
      const lab = spire!;
      const want = PODS.map((p) => ({
        spiffeId: p.spiffeId,
        parentId: lab.agent(p.node).agentId,
        selectors: [`k8s:pod-uid:${podUids.get(p.name)}`],
      }));
      await expect
        .poll(
          async () =>
            (await lab.entries())
              .filter((e) => e.selectors.some((s) => s.startsWith('k8s:pod-uid:')))
              .map(({ spiffeId, parentId, selectors }) => ({ spiffeId, parentId, selectors }))
              .sort((x, y) => x.spiffeId.localeCompare(y.spiffeId)),
          { timeout: 30_000, interval: 500 },
        )
        .toEqual(want.sort((x, y) => x.spiffeId.localeCompare(y.spiffeId)));
      // meshauthd's entries, one per agent, from the ClusterStaticEntry objects.
      await expect
        .poll(
          async () =>
            (await lab.entries())
              .filter((e) => e.spiffeId === MESHAUTHD)
              .map((e) => `${e.parentId} ${e.selectors.join(',')}`)
              .sort(),
          { timeout: 30_000, interval: 500 },
        )
        .toEqual(NODES.map((n) => `${lab.agent(n.name).agentId} unix:uid:${process.getuid?.() ?? 0}`).sort());
    }, 60_000);

    it('meshauthd in Kubernetes mode gets the pods’ SVIDs over the Delegated Identity API and authenticates a pair', async () => {
      for (const n of NODES) await cluster.start(n.name, 60_000);
      for (const n of NODES) {
        await expect
          .poll(() => cluster.logs(n.name, 'identity_source_state').map((l) => l['state']), {
            timeout: 30_000,
          })
          .toContain('connected');
      }
      const r = await cluster.connect('web', 'db', 8080, 30_000);
      expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
      expect(cluster.authEntries('node-a')).toHaveLength(1);
      expect(cluster.authEntries('node-b')).toHaveLength(1);
      const entry = JSON.parse(cluster.cli('node-a', ['entries', '-o', 'json']).trim().split('\n')[0]!) as {
        localId: string;
        remoteId: string;
      };
      expect(entry).toMatchObject({ localId: id('web'), remoteId: id('db') });
      // The identities came from SPIRE, not from the development CA.
      for (const n of NODES) expect(cluster.logs(n.name, 'dev_ca_in_use')).toHaveLength(0);
      // Each node holds only the SVIDs of the pods the API places on it.
      const updated = cluster.logs('node-b', 'svid_updated').map((l) => l['local_id']);
      expect(updated).toContain(id('db'));
      expect(updated).not.toContain(id('web'));
    }, 120_000);

    it('a pod deleted through the API loses its entry and its SVID; the other pairs keep working', async () => {
      const lab = spire!;
      await kube!.json('DELETE', '/api/v1/namespaces/demo/pods/cache?gracePeriodSeconds=0');
      await expect
        .poll(async () => (await lab.entries()).map((e) => e.spiffeId), { timeout: 30_000, interval: 500 })
        .not.toContain(id('cache'));
      await expect
        .poll(() => cluster.logs('node-b', 'svid_removed').map((l) => l['local_id']), { timeout: 30_000 })
        .toContain(id('cache'));
      expect(cluster.logs('node-b', 'svid_removed').map((l) => l['local_id'])).not.toContain(id('db'));
      const r = await cluster.connect('web', 'db', 8080, 10_000);
      expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
      for (const n of NODES) expect(cluster.daemons.get(n.name)!.child.exitCode).toBeNull();
    }, 90_000);
  },
);
