import { existsSync, readFileSync } from 'node:fs';
import { CoreV1Api } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCert, makeRootCa } from '../../helpers/certs.js';
import { KUBERNETES_VERSION, KubeApiServer, kubeBinDir } from '../../helpers/kube-apiserver.js';

const bin = kubeBinDir();
const CRD_FILE = new URL('../../../deploy/crds/meshauth.io_mutualauthpolicies.yaml', import.meta.url);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The test API server itself: real authentication (client certificates, service-account tokens),
 * RBAC, CRDs, restart with etcd kept, clean shutdown.
 */
describe.skipIf(!bin)('KubeApiServer (real etcd + kube-apiserver on loopback)', () => {
  let kube: KubeApiServer;

  beforeAll(async () => {
    kube = await KubeApiServer.start(bin!);
  }, 120_000);

  afterAll(async () => {
    await kube?.close();
  });

  it('serves the pinned release to the admin, through @kubernetes/client-node too', async () => {
    const v = await kube.json<{ gitVersion: string }>('GET', '/version');
    expect(v.gitVersion).toBe(`v${KUBERNETES_VERSION}`);
    const core = kube.admin.kubeConfig.makeApiClient(CoreV1Api);
    const list = await core.listNamespace();
    expect(list.items.map((n) => n.metadata?.name)).toContain('kube-system');
  });

  it('refuses requests without credentials or with a certificate of another CA (401)', async () => {
    expect((await kube.request('GET', '/api/v1/namespaces', { as: { kind: 'anonymous' } })).status).toBe(401);
    const otherCa = await makeRootCa('other.test');
    const stranger = await makeCert({ issuer: otherCa, subject: 'CN=mallory, O=system:masters' });
    expect(
      (await kube.request('GET', '/api/v1/namespaces', { as: { kind: 'cert', cert: stranger } })).status,
    ).toBe(401);
    expect(
      (await kube.request('GET', '/api/v1/namespaces', { as: { kind: 'token', token: 'not-a-token' } }))
        .status,
    ).toBe(401);
  });

  it('authorizes with RBAC: an authenticated user gets 403 until a binding grants the verb', async () => {
    const alice = await kube.clientUser('alice', ['team-a']);
    const as = { kind: 'cert' as const, cert: alice.cert };
    await kube.ensureNamespace('rbac-a');
    expect((await kube.request('GET', '/api/v1/namespaces/rbac-a/pods', { as })).status).toBe(403);
    const review = await kube.json<{ status: { userInfo: { username: string; groups: string[] } } }>(
      'POST',
      '/apis/authentication.k8s.io/v1/selfsubjectreviews',
      { as, body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } },
    );
    expect(review.status.userInfo.username).toBe('alice');
    expect(review.status.userInfo.groups).toContain('team-a');
    await kube.apply([
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'pod-reader', namespace: 'rbac-a' },
        rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['list'] }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'team-a-reads-pods', namespace: 'rbac-a' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-reader' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'team-a' }],
      },
    ]);
    expect((await kube.request('GET', '/api/v1/namespaces/rbac-a/pods', { as })).status).toBe(200);
    expect((await kube.request('GET', '/api/v1/namespaces/default/pods', { as })).status).toBe(403);
    // The kubeconfig made for alice authenticates the same way.
    const core = alice.kubeConfig.makeApiClient(CoreV1Api);
    expect((await core.listNamespacedPod({ namespace: 'rbac-a' })).items).toEqual([]);
  });

  it('issues service-account tokens (TokenRequest) that authenticate as the service account', async () => {
    const token = await kube.serviceAccountToken('sa-test', 'reader');
    const review = await kube.json<{ status: { userInfo: { username: string } } }>(
      'POST',
      '/apis/authentication.k8s.io/v1/selfsubjectreviews',
      {
        as: { kind: 'token', token },
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      },
    );
    expect(review.status.userInfo.username).toBe('system:serviceaccount:sa-test:reader');
    const { kubeConfig } = await kube.tokenKubeconfig('reader', token);
    await expect(
      kubeConfig.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: 'sa-test' }),
    ).rejects.toThrow(/403|forbidden/i);
  });

  it('establishes the MutualAuthPolicy CRD shipped in the repository', async () => {
    const docs = parseAllDocuments(readFileSync(CRD_FILE, 'utf8')).map(
      (d) => d.toJSON() as Record<string, unknown>,
    );
    expect(docs).toHaveLength(1);
    await kube.apply(docs);
    await kube.waitForCrd('mutualauthpolicies.meshauth.io');
    const created = await kube.json<{ metadata: { name: string } }>(
      'POST',
      '/apis/meshauth.io/v1alpha1/mutualauthpolicies',
      {
        body: {
          apiVersion: 'meshauth.io/v1alpha1',
          kind: 'MutualAuthPolicy',
          metadata: { name: 'first' },
          spec: { rules: [{ name: 'r', from: { namespace: 'a' }, to: { namespace: 'b' } }] },
        },
      },
    );
    expect(created.metadata.name).toBe('first');
  });

  it('stops and restarts the API server while etcd keeps the objects', async () => {
    await kube.stopApiServer();
    expect(kube.apiServerRunning()).toBe(false);
    await expect(kube.request('GET', '/readyz')).rejects.toThrow(/ECONNREFUSED/);
    await kube.startApiServer();
    expect(kube.apiServerRunning()).toBe(true);
    const got = await kube.json<{ spec: { mode: string } }>(
      'GET',
      '/apis/meshauth.io/v1alpha1/mutualauthpolicies/first',
    );
    expect(got.spec.mode).toBe('enforce');
  }, 120_000);

  it('close() stops both processes and removes the directory, and may be called again', async () => {
    const lab = await KubeApiServer.start(bin!);
    const pids = lab.pids();
    expect(pids.length).toBe(2);
    expect(pids.every(alive)).toBe(true);
    expect(existsSync(lab.dir)).toBe(true);
    await lab.close();
    expect(pids.some(alive)).toBe(false);
    expect(existsSync(lab.dir)).toBe(false);
    await lab.close();
    await expect(lab.startApiServer()).rejects.toThrow(/closed/);
  }, 120_000);
});
