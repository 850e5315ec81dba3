import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MUTUAL_AUTH_POLICY } from '../../../src/kubernetes/index.js';
import { KubeApiServer, kubeBinDir, type KubeCredential } from '../../helpers/kube-apiserver.js';

const bin = kubeBinDir();
const manifests = (file: string): Record<string, unknown>[] =>
  parseAllDocuments(readFileSync(new URL(`../../../deploy/${file}`, import.meta.url), 'utf8')).map(
    (d) => d.toJSON() as Record<string, unknown>,
  );
const POLICIES = `/apis/${MUTUAL_AUTH_POLICY.apiVersion}/${MUTUAL_AUTH_POLICY.plural}`;
const MERGE = 'application/merge-patch+json';

/**
 * meshauthd's ClusterRole (deploy/rbac/meshauthd-rbac.yaml) and its own-node admission policy
 * (deploy/rbac/meshauthd-own-node.yaml), with the daemon's real credential: a service-account token
 * bound to its pod on node-a, as a projected token in the pod would be.
 */
describe.skipIf(!bin)('meshauthd RBAC against the real API server', () => {
  let kube: KubeApiServer;
  let daemon: KubeCredential;
  let unbound: KubeCredential;

  beforeAll(async () => {
    kube = await KubeApiServer.start(bin!);
    await kube.apply(manifests('crds/meshauth.io_mutualauthpolicies.yaml'));
    await kube.waitForCrd(MUTUAL_AUTH_POLICY.crdName);
    await kube.ensureNamespace('meshauth');
    await kube.ensureNamespace('shop');
    await kube.apply([
      ...manifests('rbac/meshauthd-rbac.yaml'),
      ...manifests('rbac/meshauthd-own-node.yaml'),
      ...['node-a', 'node-b'].map((name) => ({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name, labels: { 'kubernetes.io/hostname': name } },
      })),
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'web-1', namespace: 'shop' },
        spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'web' }] },
      },
      {
        apiVersion: MUTUAL_AUTH_POLICY.apiVersion,
        kind: MUTUAL_AUTH_POLICY.kind,
        metadata: { name: 'shop' },
        spec: { rules: [{ name: 'r', from: { namespace: 'shop' }, to: { namespace: 'shop' } }] },
      },
    ]);
    const pod = await kube.json<{ metadata: { uid: string } }>('POST', '/api/v1/namespaces/meshauth/pods', {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'meshauthd-a' },
        spec: {
          nodeName: 'node-a',
          serviceAccountName: 'meshauthd',
          containers: [{ name: 'meshauthd', image: 'meshauth' }],
        },
      },
    });
    daemon = {
      kind: 'token',
      token: await kube.serviceAccountToken('meshauth', 'meshauthd', {
        boundPod: { name: 'meshauthd-a', uid: pod.metadata.uid },
      }),
    };
    unbound = { kind: 'token', token: await kube.serviceAccountToken('meshauth', 'meshauthd') };
  }, 120_000);

  afterAll(async () => {
    await kube?.close();
  });

  const annotate = (node: string, as: KubeCredential, annotations: Record<string, string | null>) =>
    kube.request('PATCH', `/api/v1/nodes/${node}`, {
      as,
      contentType: MERGE,
      body: { metadata: { annotations } },
    });

  it('the token carries the pod and its node, as a projected token in the pod does', async () => {
    const review = await kube.json<{
      status: { userInfo: { username: string; extra?: Record<string, string[]> } };
    }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      as: daemon,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    expect(review.status.userInfo.username).toBe('system:serviceaccount:meshauth:meshauthd');
    expect(review.status.userInfo.extra?.['authentication.kubernetes.io/node-name']).toEqual(['node-a']);
    expect(review.status.userInfo.extra?.['authentication.kubernetes.io/pod-name']).toEqual(['meshauthd-a']);
  });

  it('can list and watch pods, nodes and MutualAuthPolicies in every namespace', async () => {
    for (const path of ['/api/v1/pods', '/api/v1/nodes', POLICIES]) {
      const list = await kube.request('GET', path, { as: daemon });
      expect(list.status, path).toBe(200);
      expect((JSON.parse(list.body) as { items: unknown[] }).items.length, path).toBeGreaterThan(0);
      const rv = (JSON.parse(list.body) as { metadata: { resourceVersion: string } }).metadata
        .resourceVersion;
      const watch = await kube.request('GET', `${path}?watch=1&resourceVersion=${rv}&timeoutSeconds=1`, {
        as: daemon,
      });
      expect(watch.status, `${path} watch`).toBe(200);
    }
  });

  it('publishes meshauth.io/ annotations on its own node, and only there', async () => {
    // The admission policy takes effect once the API server has loaded it: wait for the first denial.
    const deadline = Date.now() + 30_000;
    let other = await annotate('node-b', daemon, { 'meshauth.io/wireguard-public-key': 'x' });
    while (other.status === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      other = await annotate('node-b', daemon, { 'meshauth.io/wireguard-public-key': 'x' });
    }
    expect(other.status).toBe(403);
    expect(other.body).toMatch(/meshauthd may change only the Node its pod runs on/);

    const key = 'kCl8mM5m0w1ud0uCOxbyJ4w7g4+Z2vO3P9Fbu6p5a0E=';
    const own = await annotate('node-a', daemon, {
      'meshauth.io/wireguard-public-key': key,
      'meshauth.io/wireguard-port': '51871',
    });
    expect(own.status, own.body).toBe(200);
    const node = await kube.json<{ metadata: { annotations: Record<string, string> } }>(
      'GET',
      '/api/v1/nodes/node-a',
    );
    expect(node.metadata.annotations['meshauth.io/wireguard-public-key']).toBe(key);
    // Removing its own annotation is fine too.
    expect((await annotate('node-a', daemon, { 'meshauth.io/wireguard-port': null })).status).toBe(200);

    const label = await kube.request('PATCH', '/api/v1/nodes/node-a', {
      as: daemon,
      contentType: MERGE,
      body: { metadata: { labels: { 'node-role.kubernetes.io/control-plane': '' } } },
    });
    expect(label.status).toBe(403);
    expect(label.body).toMatch(/may not change a Node's labels or spec/);
    const spec = await kube.request('PATCH', '/api/v1/nodes/node-a', {
      as: daemon,
      contentType: MERGE,
      body: { spec: { unschedulable: true } },
    });
    expect(spec.status).toBe(403);
    const foreign = await annotate('node-a', daemon, { 'example.com/owner': 'meshauthd' });
    expect(foreign.status).toBe(403);
    expect(foreign.body).toMatch(/only meshauth\.io\/ annotations/);
    // A token not bound to a pod on a node may change no Node.
    expect((await annotate('node-a', unbound, { 'meshauth.io/wireguard-port': '1' })).status).toBe(403);
  });

  it('can create and patch Events and write MutualAuthPolicy status', async () => {
    const event = await kube.request('POST', '/api/v1/namespaces/default/events', {
      as: daemon,
      body: {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: 'shop.invalid' },
        involvedObject: {
          apiVersion: MUTUAL_AUTH_POLICY.apiVersion,
          kind: MUTUAL_AUTH_POLICY.kind,
          name: 'shop',
        },
        reason: 'InvalidRules',
        message: 'test',
        type: 'Warning',
        source: { component: 'meshauthd', host: 'node-a' },
      },
    });
    expect(event.status, event.body).toBe(201);
    const patched = await kube.request('PATCH', '/api/v1/namespaces/default/events/shop.invalid', {
      as: daemon,
      contentType: MERGE,
      body: { count: 2 },
    });
    expect(patched.status).toBe(200);
    const status = await kube.request('PATCH', `${POLICIES}/shop/status`, {
      as: daemon,
      contentType: MERGE,
      body: {
        status: {
          conditions: [
            {
              type: 'Valid',
              status: 'True',
              reason: 'Accepted',
              message: 'ok',
              lastTransitionTime: '2026-01-01T00:00:00Z',
            },
          ],
        },
      },
    });
    expect(status.status, status.body).toBe(200);
  });

  it('cannot do anything else: read secrets, change pods, change policies, delete or replace nodes', async () => {
    const denied: [string, string, unknown?][] = [
      ['GET', '/api/v1/namespaces/meshauth/secrets'],
      ['GET', '/api/v1/namespaces/shop/pods/web-1'],
      ['GET', '/api/v1/nodes/node-a'],
      ['GET', '/api/v1/namespaces/shop/configmaps'],
      ['DELETE', '/api/v1/namespaces/shop/pods/web-1'],
      ['PATCH', '/api/v1/namespaces/shop/pods/web-1', { metadata: { labels: { x: 'y' } } }],
      ['PATCH', '/api/v1/namespaces/shop/pods/web-1/status', { status: { podIP: '10.0.0.9' } }],
      ['POST', '/api/v1/namespaces/shop/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }],
      ['DELETE', '/api/v1/nodes/node-b'],
      ['PATCH', '/api/v1/nodes/node-a/status', { status: { capacity: { cpu: '1' } } }],
      ['PUT', '/api/v1/nodes/node-a', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } }],
      [
        'POST',
        POLICIES,
        {
          apiVersion: MUTUAL_AUTH_POLICY.apiVersion,
          kind: MUTUAL_AUTH_POLICY.kind,
          metadata: { name: 'x' },
          spec: { rules: [] },
        },
      ],
      ['PATCH', `${POLICIES}/shop`, { spec: { mode: 'disabled' } }],
      ['DELETE', `${POLICIES}/shop`],
      ['GET', `${POLICIES}/shop`],
      ['DELETE', '/api/v1/namespaces/default/events/shop.invalid'],
      ['GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions'],
      ['GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles'],
      [
        'POST',
        '/api/v1/namespaces/meshauth/serviceaccounts/meshauthd/token',
        { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: {} },
      ],
    ];
    for (const [method, path, body] of denied) {
      const r = await kube.request(method, path, {
        as: daemon,
        ...(body === undefined ? {} : { body, contentType: method === 'PATCH' ? MERGE : 'application/json' }),
      });
      expect(r.status, `${method} ${path}: ${r.body}`).toBe(403);
    }
    // The policy object is unchanged by the refused requests.
    const p = await kube.json<{ spec: { mode: string } }>('GET', `${POLICIES}/shop`);
    expect(p.spec.mode).toBe('enforce');
  });
});
