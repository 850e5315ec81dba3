/**
 * The Kubernetes sources against a real kube-apiserver: informers from @kubernetes/client-node,
 * Pods and Nodes created through the API with their status patched, deletes, an API server
 * restart (state kept, watch resumed), the node key annotation, and bad credentials at start-up.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { parseAllDocuments } from 'yaml';
import { KubeApiServer, kubeBinDir } from '../../helpers/kube-apiserver.js';
import {
  ANNOTATIONS,
  KubernetesAccessError,
  KubernetesClient,
  KubernetesInventorySource,
  KubernetesPolicySource,
  loadKubeConfig,
  MUTUAL_AUTH_POLICY,
  mutualAuthPolicyConverter,
  publishNodeKey,
} from '../../../src/kubernetes/index.js';
import type { Inventory } from '../../../src/inventory/index.js';

const bin = kubeBinDir();
const log = pino({ level: 'silent' });
const RESOURCE = { group: 'meshauth.io', version: 'v1alpha1', plural: 'mutualauthpolicies' };
const KEY = Buffer.alloc(32, 9).toString('base64');

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<number> {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

describe.skipIf(!bin)('Kubernetes sources against a real API server', () => {
  let kube: KubeApiServer;
  let client: KubernetesClient;
  let source: KubernetesInventorySource;
  let inv: Inventory;

  const createNode = async (name: string, ip: string, cidr: string): Promise<void> => {
    await kube.json('POST', '/api/v1/nodes', {
      body: { apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: { podCIDR: cidr, podCIDRs: [cidr] } },
    });
    await kube.json('PATCH', `/api/v1/nodes/${name}/status`, {
      contentType: 'application/merge-patch+json',
      body: { status: { addresses: [{ type: 'InternalIP', address: ip }] } },
    });
  };
  const createPod = async (
    ns: string,
    name: string,
    node: string,
    sa: string,
    ips: string[],
  ): Promise<void> => {
    await kube.json('POST', `/api/v1/namespaces/${ns}/pods`, {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name },
        spec: {
          nodeName: node,
          serviceAccountName: sa,
          automountServiceAccountToken: false,
          containers: [{ name: 'c', image: 'example.invalid/none' }],
        },
      },
    });
    await kube.json('PATCH', `/api/v1/namespaces/${ns}/pods/${name}/status`, {
      contentType: 'application/merge-patch+json',
      body: { status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } },
    });
  };
  const deletePod = (ns: string, name: string) =>
    kube.json('DELETE', `/api/v1/namespaces/${ns}/pods/${name}?gracePeriodSeconds=0`);

  beforeAll(async () => {
    kube = await KubeApiServer.start(bin!);
    await kube.ensureNamespace('demo');
    await createNode('node-a', '192.168.50.1', '10.50.1.0/24');
    await createNode('node-b', '192.168.50.2', '10.50.2.0/24');
    await createPod('demo', 'web-1', 'node-a', 'web', ['10.50.1.5']);
    await createPod('demo', 'api-1', 'node-b', 'api', ['10.50.2.5']);
    client = new KubernetesClient(loadKubeConfig(kube.admin.kubeconfigPath), RESOURCE);
    await client.checkAccess('node-a');
    source = new KubernetesInventorySource({
      pods: client.podInformer(),
      nodes: client.nodeInformer(),
      conversion: {
        trustDomain: 'cluster.test',
        spiffeIdTemplate: 'spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}',
        addressType: 'InternalIP',
      },
      logger: log,
      retryMs: 200,
      maxRetryMs: 1000,
    });
    inv = await source.start();
  }, 180_000);

  afterAll(async () => {
    await source?.close();
    await kube?.close();
  });

  it('lists pods and nodes into the inventory', () => {
    expect(inv.workloadByIp('10.50.1.5')).toMatchObject({
      name: 'demo/web-1',
      spiffeId: 'spiffe://cluster.test/ns/demo/sa/web',
      node: 'node-a',
    });
    expect(inv.workloadByIp('10.50.1.5')?.selectors).toEqual(
      expect.arrayContaining(['k8s:ns:demo', 'k8s:sa:web', expect.stringMatching(/^k8s:pod-uid:/)]),
    );
    expect(inv.node('node-b')).toMatchObject({ address: '192.168.50.2', podCIDRs: ['10.50.2.0/24'] });
    expect(source.status().every((s) => s.state === 'synced' && s.lastSyncAtMs > 0)).toBe(true);
  });

  it('follows pod creation (status.podIPs written), IP reuse and deletion', async () => {
    await createPod('demo', 'web-2', 'node-a', 'web', ['10.50.1.6']);
    await until('web-2', () => inv.workloadByIp('10.50.1.6') !== undefined);
    await deletePod('demo', 'web-2');
    const ms = await until('web-2 gone', () => inv.workloadByIp('10.50.1.6') === undefined);
    expect(ms).toBeLessThan(1000);
    // a new pod gets the address of api-1 (created in beforeAll, often in the same second) while
    // api-1's deletion is not seen yet: the address moves to the new pod at once
    await createPod('demo', 'reuse', 'node-b', 'other', ['10.50.2.5']);
    await until('address reused', () => inv.workloadByIp('10.50.2.5')?.name === 'demo/reuse');
    expect(inv.workloadByIp('10.50.2.5')?.spiffeId).toBe('spiffe://cluster.test/ns/demo/sa/other');
  });

  it('leaves out a pod at a loopback address and a node at the unspecified address, naming them; others stay', async () => {
    await createPod('demo', 'loopback', 'node-a', 'web', ['127.0.0.1']);
    await until(
      'loopback pod excluded',
      () => source.exclusions().get('pod/demo/loopback') === 'malformed-ip',
    );
    expect(inv.workloadByIp('127.0.0.1')).toBeUndefined();
    await createNode('node-z', '0.0.0.0', '10.50.9.0/24');
    // the node is created before its status is written: first no address, then 0.0.0.0
    await until('node-z excluded', () => source.exclusions().get('node/node-z') === 'malformed-address');
    expect(inv.node('node-z')).toBeUndefined();
    expect(inv.workloadByIp('10.50.1.5')?.name).toBe('demo/web-1');
    expect(inv.node('node-a')?.address).toBe('192.168.50.1');
    await deletePod('demo', 'loopback');
    await kube.json('DELETE', '/api/v1/nodes/node-z');
  });

  it('keeps state while the API server is down and resumes the watch when it returns', async () => {
    await kube.stopApiServer();
    await until('disconnected', () => source.status().some((s) => s.state === 'disconnected'), 60_000);
    expect(inv.workloadByIp('10.50.1.5')?.name).toBe('demo/web-1');
    await kube.startApiServer();
    await until('synced again', () => source.status().every((s) => s.state === 'synced'), 60_000);
    await createPod('demo', 'after', 'node-a', 'web', ['10.50.1.9']);
    await until('pod after restart', () => inv.workloadByIp('10.50.1.9') !== undefined);
    expect(inv.workloadByIp('10.50.1.5')?.name).toBe('demo/web-1');
    expect(source.status()[0]?.errors).toBeGreaterThan(0);
  }, 120_000);

  it('publishes a node key annotation that the inventory then carries', async () => {
    const pub = publishNodeKey({
      api: client,
      nodeName: 'node-a',
      publicKey: KEY,
      wireguardPort: 51999,
      logger: log,
    });
    await pub.published;
    pub.close();
    expect((await client.nodeAnnotations('node-a'))[ANNOTATIONS.wireguardPublicKey]).toBe(KEY);
    await until('key in inventory', () => inv.node('node-a')?.wireguardPublicKey === KEY);
    expect(inv.node('node-a')?.wireguardPort).toBe(51999);
  });

  it('applies MutualAuthPolicy objects: modes, Valid condition, Event for an invalid version, delete', async () => {
    const crd = parseAllDocuments(
      readFileSync(
        new URL('../../../deploy/crds/meshauth.io_mutualauthpolicies.yaml', import.meta.url),
        'utf8',
      ),
    ).map((d) => d.toJS() as Record<string, unknown>);
    await kube.apply(crd);
    await kube.waitForCrd(MUTUAL_AUTH_POLICY.crdName);
    const base = `/apis/${MUTUAL_AUTH_POLICY.group}/${MUTUAL_AUTH_POLICY.version}/${MUTUAL_AUTH_POLICY.plural}`;
    const web = 'spiffe://cluster.test/ns/demo/sa/web';
    const api = 'spiffe://cluster.test/ns/demo/sa/api';
    const body = (mode: string, to: object) => ({
      apiVersion: MUTUAL_AUTH_POLICY.apiVersion,
      kind: MUTUAL_AUTH_POLICY.kind,
      metadata: { name: 'web-api' },
      spec: { mode, rules: [{ name: 'web-api', from: { namespace: 'demo', serviceAccount: 'web' }, to }] },
    });
    await kube.json('POST', base, { body: body('enforce', { spiffeId: api }) });
    const src = new KubernetesPolicySource({
      informer: client.policyInformer(),
      convert: mutualAuthPolicyConverter(
        'cluster.test',
        'spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}',
      ),
      reporter: client.policyReporter('meshauthd', 'node-a'),
      logger: log,
      retryMs: 200,
    });
    try {
      const p = await src.start();
      expect(p.pairMode(web, api)).toBe('enforce');
      type Obj = { status?: { conditions?: Array<{ type: string; status: string; reason: string }> } };
      const cond = async () =>
        (await kube.json<Obj>('GET', `${base}/web-api`)).status?.conditions?.find((c) => c.type === 'Valid');
      for (let i = 0; i < 100 && (await cond())?.status !== 'True'; i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(await cond()).toMatchObject({ status: 'True', reason: 'Accepted' });

      const patch = (b: object) =>
        kube.json('PATCH', `${base}/web-api`, { contentType: 'application/merge-patch+json', body: b });
      await patch({ spec: { mode: 'permissive' } });
      await until('permissive', () => src.policy.pairMode(web, api) === 'permissive');
      // valid for the CRD schema, invalid for meshauth ("**"): rejected whole, generation 2 stays
      await patch({
        spec: {
          rules: [
            {
              name: 'web-api',
              from: { namespace: 'demo', serviceAccount: 'web' },
              to: { spiffeId: 'spiffe://cluster.test/ns/**' },
            },
          ],
        },
      });
      for (let i = 0; i < 100 && (await cond())?.status !== 'False'; i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(await cond()).toMatchObject({ status: 'False', reason: 'InvalidRules' });
      expect(src.policy.pairMode(web, api)).toBe('permissive');
      const events = await kube.json<{
        items: Array<{ reason?: string; involvedObject?: { name?: string } }>;
      }>('GET', '/api/v1/namespaces/default/events');
      expect(
        events.items.some((e) => e.reason === 'InvalidRules' && e.involvedObject?.name === 'web-api'),
      ).toBe(true);
      await kube.json('DELETE', `${base}/web-api`);
      await until('policy gone', () => src.policy.rules.length === 0);
    } finally {
      await src.close();
    }
  }, 60_000);

  it('aggregates identical policy Events into one object (count) that names its reporter', async () => {
    const reporter = client.policyReporter('meshauth.io/meshauthd', 'node-a');
    const obj = { metadata: { name: 'aggregated', uid: 'a1b2' } };
    await reporter.event(obj, 'Warning', 'InvalidRules', 'rule r: bad pattern');
    await reporter.event(obj, 'Warning', 'InvalidRules', 'rule r: bad pattern');
    await reporter.event(obj, 'Warning', 'InvalidRules', 'rule r: another problem');
    type Ev = {
      message: string;
      count: number;
      action?: string;
      reportingComponent?: string;
      reportingInstance?: string;
      involvedObject: { name: string; kind: string };
    };
    const list = await kube.json<{ items: Ev[] }>(
      'GET',
      '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Daggregated',
    );
    expect(list.items.map((e) => [e.message, e.count]).sort()).toEqual([
      ['rule r: another problem', 1],
      ['rule r: bad pattern', 2],
    ]);
    expect(list.items[0]).toMatchObject({
      action: 'Validate',
      reportingComponent: 'meshauth.io/meshauthd',
      reportingInstance: 'node-a',
      involvedObject: { kind: 'MutualAuthPolicy', name: 'aggregated' },
    });
  });

  it('stops with a clear error for a missing kubeconfig, rejected credentials or an unknown node', async () => {
    expect(() => loadKubeConfig('/nonexistent/kubeconfig')).toThrow(/does not exist/);
    expect(() => loadKubeConfig(undefined, {})).toThrow(KubernetesAccessError);
    const bad = await kube.tokenKubeconfig('bad', 'not-a-token');
    const c = new KubernetesClient(loadKubeConfig(bad.kubeconfigPath), RESOURCE);
    await expect(c.checkAccess('node-a')).rejects.toThrow(/401 Unauthorized/);
    const nobody = await kube.clientUser('nobody');
    const n = new KubernetesClient(loadKubeConfig(nobody.kubeconfigPath), RESOURCE);
    await expect(n.checkAccess('node-a')).rejects.toThrow(/403 Forbidden/);
    await expect(client.checkAccess('no-such-node')).rejects.toThrow(/does not exist/);
  });
});
