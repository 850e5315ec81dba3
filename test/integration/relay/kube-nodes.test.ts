/**
 * The relay's node set from a real kube-apiserver: Nodes created through the API (status addresses
 * patched as a kubelet would) join the set with their InternalIP, the configured API port and the
 * templated SPIFFE ID; a changed address is followed; deleted Nodes leave it; a cluster-wide
 * listing fans out to exactly the nodes of the set. The chart's relay (no static node list) runs
 * with --kubernetes under a ServiceAccount whose ClusterRole is enough for that and nothing more.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { helmBinary, only, renderChart } from '../../helpers/helm.js';
import { KubeApiServer, kubeBinDir } from '../../helpers/kube-apiserver.js';
import { DevCa } from '../../../src/identity/index.js';
import { KubernetesClient, loadKubeConfig, MUTUAL_AUTH_POLICY } from '../../../src/kubernetes/index.js';
import { KubernetesNodeSource, Relay, type NodeApi, type RelayNode } from '../../../src/relay/index.js';
import { systemClock } from '../../../src/time.js';

const bin = kubeBinDir();
const helm = helmBinary();
const log = pino({ level: 'silent' });
const ROOT = join(import.meta.dirname, '..', '..', '..');

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(!bin)('relay node set from a real API server', () => {
  let kube: KubeApiServer;
  let source: KubernetesNodeSource;

  const setAddress = (name: string, ip: string) =>
    kube.json('PATCH', `/api/v1/nodes/${name}/status`, {
      contentType: 'application/merge-patch+json',
      body: {
        status: {
          addresses: [
            { type: 'Hostname', address: name },
            { type: 'InternalIP', address: ip },
          ],
        },
      },
    });
  const createNode = async (name: string, ip?: string): Promise<void> => {
    await kube.json('POST', '/api/v1/nodes', {
      body: { apiVersion: 'v1', kind: 'Node', metadata: { name } },
    });
    if (ip) await setAddress(name, ip);
  };
  const deleteNode = (name: string) => kube.json('DELETE', `/api/v1/nodes/${name}`);
  const names = () => source.nodes().map((n) => n.name);

  beforeAll(async () => {
    kube = await KubeApiServer.start(bin!);
    await createNode('node-a', '192.168.60.1');
    await createNode('node-b', 'fd00:60::2');
    const client = new KubernetesClient(loadKubeConfig(kube.admin.kubeconfigPath), MUTUAL_AUTH_POLICY);
    source = new KubernetesNodeSource({
      informer: client.nodeInformer(),
      apiPort: 4251,
      nodeIdTemplate: 'spiffe://cluster.test/meshauth/node/{node}',
      clock: systemClock,
      logger: log,
    }).start();
    await source.synced;
  }, 180_000);

  afterAll(async () => {
    await source?.close();
    await kube?.close();
  });

  it('lists the Nodes as meshauthd API addresses with their expected SPIFFE IDs', () => {
    expect(source.nodes()).toEqual([
      {
        name: 'node-a',
        address: '192.168.60.1:4251',
        spiffeId: 'spiffe://cluster.test/meshauth/node/node-a',
      },
      {
        name: 'node-b',
        address: '[fd00:60::2]:4251',
        spiffeId: 'spiffe://cluster.test/meshauth/node/node-b',
      },
    ]);
    expect(source.status()).toMatchObject({ resource: 'nodes', state: 'synced' });
  });

  it('picks up nodes joining (once they have an address), moving and leaving', async () => {
    await createNode('node-c');
    // a Node without an InternalIP yet has no reachable API: left out until the kubelet reports one
    await setAddress('node-a', '192.168.60.11');
    await until('node-a moved', () => source.nodes()[0]?.address === '192.168.60.11:4251');
    expect(names()).toEqual(['node-a', 'node-b']);
    await setAddress('node-c', '192.168.60.3');
    await until('node-c joined', () => names().includes('node-c'));
    expect(source.nodes().find((n) => n.name === 'node-c')?.address).toBe('192.168.60.3:4251');
    await deleteNode('node-b');
    await until('node-b left', () => !names().includes('node-b'));
    expect(names()).toEqual(['node-a', 'node-c']);
  });

  it('fans a cluster-wide listing out to exactly the nodes of the set', async () => {
    const asked: RelayNode[] = [];
    const relay = new Relay({
      nodes: () => source.nodes(),
      connect: (node): NodeApi => ({
        listEntries: () => {
          asked.push(node);
          return Promise.resolve([]);
        },
        queryEvents: () => Promise.reject(new Error('not used')),
        followEvents: () => {
          throw new Error('not used');
        },
        status: () => Promise.reject(new Error('not used')),
        close: () => {},
      }),
      logger: log,
    });
    try {
      await createNode('node-d', '192.168.60.4');
      await until('node-d joined', () => names().includes('node-d'));
      const r = await relay.listEntries();
      expect(r.partial).toBe(false);
      expect(r.nodes.map((a) => a.node).sort()).toEqual(['node-a', 'node-c', 'node-d']);
      expect(asked.map((n) => n.address).sort()).toEqual([
        '192.168.60.11:4251',
        '192.168.60.3:4251',
        '192.168.60.4:4251',
      ]);
    } finally {
      relay.close();
    }
  });

  it.skipIf(!helm)("runs in the chart's relay namespace with list/watch nodes and nothing more", async () => {
    const objs = await renderChart(helm!, {
      relay: {
        enabled: true,
        namespace: 'meshauth-audit',
        allowedIds: ['spiffe://cluster.test/operator'],
        tls: { secretName: 'relay-svid' },
        nodeIdTemplate: 'spiffe://cluster.test/meshauth/node/{node}',
      },
    });
    const deployment = only(objs, 'Deployment', 'meshauth-relay') as unknown as {
      metadata: { namespace: string };
      spec: { template: { spec: { serviceAccountName: string; containers: { args: string[] }[] } } };
    };
    const pod = deployment.spec.template.spec;
    expect(deployment.metadata.namespace).toBe('meshauth-audit');
    expect(pod.serviceAccountName).toBe('meshauth-relay');
    expect(pod.containers[0]!.args).toEqual(
      expect.arrayContaining([
        '--kubernetes',
        '--api-port=4251',
        '--node-id-template=spiffe://cluster.test/meshauth/node/{node}',
      ]),
    );
    expect(pod.containers[0]!.args.some((a) => a.startsWith('--node='))).toBe(false);
    const rbac = objs.filter(
      (o) =>
        ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind) &&
        o.metadata.name === 'meshauth-relay',
    );
    expect(rbac.map((o) => o.kind).sort()).toEqual(['ClusterRole', 'ClusterRoleBinding', 'ServiceAccount']);
    await kube.ensureNamespace('meshauth-audit');
    await kube.apply(rbac as unknown as Record<string, unknown>[]);
    const token = await kube.serviceAccountToken('meshauth-audit', 'meshauth-relay');
    const asRelay = await kube.tokenKubeconfig('relay', token);
    const relaySource = new KubernetesNodeSource({
      informer: new KubernetesClient(
        loadKubeConfig(asRelay.kubeconfigPath),
        MUTUAL_AUTH_POLICY,
      ).nodeInformer(),
      apiPort: 4251,
      clock: systemClock,
      logger: log,
    }).start();
    try {
      await relaySource.synced;
      expect(relaySource.nodes().map((n) => n.name)).toEqual(names());
      await createNode('node-e', '192.168.60.5');
      await until('node-e seen by the relay', () => relaySource.nodes().some((n) => n.name === 'node-e'));
      expect(relaySource.status()).toMatchObject({ state: 'synced' });
    } finally {
      await relaySource.close();
    }
    const cred = { kind: 'token' as const, token };
    for (const [method, path] of [
      ['GET', '/api/v1/nodes/node-a'],
      ['PATCH', '/api/v1/nodes/node-a'],
      ['DELETE', '/api/v1/nodes/node-a'],
      ['GET', '/api/v1/pods'],
      ['GET', '/api/v1/namespaces/meshauth-audit/secrets'],
    ] as const) {
      const r = await kube.request(method, path, {
        as: cred,
        ...(method === 'PATCH'
          ? { contentType: 'application/merge-patch+json', body: { metadata: { labels: { x: 'y' } } } }
          : {}),
      });
      expect(r.status, `${method} ${path}`).toBe(403);
    }
  });

  it('meshauth-relay --kubernetes serves once the Nodes are listed, and stops on SIGTERM', async () => {
    try {
      execFileSync('npx', ['tsc', '-p', join(import.meta.dirname, 'tsconfig.dist.json')], {
        cwd: ROOT,
        stdio: 'pipe',
      });
    } catch {
      // type errors elsewhere do not stop the emit; a missing output does (checked below)
    }
    expect(existsSync(join(ROOT, 'dist', 'src', 'relay', 'main.js'))).toBe(true);
    const ca = await DevCa.create('cluster.test');
    writeFileSync(join(kube.dir, 'relay-ca.pem'), ca.caPem);
    const svid = await ca.issue('spiffe://cluster.test/meshauth/relay');
    writeFileSync(join(kube.dir, 'relay.crt'), svid.chainPem);
    writeFileSync(join(kube.dir, 'relay.key'), svid.keyPem, { mode: 0o600 });
    const want = names().length;
    expect(want).toBeGreaterThan(0);
    const p = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'meshauth-relay.js'),
        '--listen',
        '127.0.0.1:0',
        '--tls-cert',
        join(kube.dir, 'relay.crt'),
        '--tls-key',
        join(kube.dir, 'relay.key'),
        '--tls-bundle',
        join(kube.dir, 'relay-ca.pem'),
        '--allow',
        'spiffe://cluster.test/ops/admin',
        '--audit-db',
        join(kube.dir, 'relay-audit.db'),
        '--kubernetes',
        '--kubeconfig',
        kube.admin.kubeconfigPath,
        '--api-port',
        '4251',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    try {
      await until('relay_started', () => out.includes('"relay_started"') || p.exitCode !== null, 30_000);
      const started = out.split('\n').find((l) => l.includes('"relay_started"'));
      expect(started, out).toBeDefined();
      // listed before serving: the first answer already covers every Node
      expect(JSON.parse(started!)).toMatchObject({ nodes: want });
    } finally {
      p.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 120_000);
});
