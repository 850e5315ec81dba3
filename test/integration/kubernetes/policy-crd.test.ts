import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MUTUAL_AUTH_POLICY,
  PolicyObjectError,
  policyFromObject,
  validCondition,
  type MutualAuthPolicyObject,
} from '../../../src/kubernetes/index.js';
import { KubeApiServer, kubeBinDir } from '../../helpers/kube-apiserver.js';

const bin = kubeBinDir();
const CRD_FILE = new URL('../../../deploy/crds/meshauth.io_mutualauthpolicies.yaml', import.meta.url);
const BASE = `/apis/${MUTUAL_AUTH_POLICY.apiVersion}/${MUTUAL_AUTH_POLICY.plural}`;
const TD = 'cluster.local';

function policy(name: string, spec: unknown): Record<string, unknown> {
  return {
    apiVersion: MUTUAL_AUTH_POLICY.apiVersion,
    kind: MUTUAL_AUTH_POLICY.kind,
    metadata: { name },
    spec,
  };
}

/** The CRD's schema and CEL rules, enforced by the real API server, and the converter on what it stores. */
describe.skipIf(!bin)('MutualAuthPolicy CRD against the real API server', () => {
  let kube: KubeApiServer;

  beforeAll(async () => {
    kube = await KubeApiServer.start(bin!);
    const docs = parseAllDocuments(readFileSync(CRD_FILE, 'utf8')).map(
      (d) => d.toJSON() as Record<string, unknown>,
    );
    await kube.apply(docs);
    await kube.waitForCrd(MUTUAL_AUTH_POLICY.crdName);
  }, 120_000);

  afterAll(async () => {
    await kube?.close();
  });

  it('accepts valid objects, fills in the defaults, and the stored object converts to a Policy', async () => {
    const stored = await kube.json<MutualAuthPolicyObject>('POST', BASE, {
      body: policy('shop', {
        rules: [
          {
            name: 'web-api',
            from: { namespace: 'shop', serviceAccount: 'web' },
            to: { spiffeId: `spiffe://${TD}/ns/shop/sa/api` },
          },
          {
            name: 'ops',
            from: { spiffeId: `spiffe://${TD}/ns/ops/*` },
            to: { spiffeId: '*' },
            mode: 'disabled',
          },
          { name: 'wild', from: { namespace: 'pay-*', serviceAccount: '*' }, to: { namespace: 'pay' } },
        ],
      }),
    });
    expect(stored.spec?.mode).toBe('enforce');
    expect(stored.spec?.rules?.map((r) => [r.auth, r.mode])).toEqual([
      ['mutual', 'required'],
      ['mutual', 'disabled'],
      ['mutual', 'required'],
    ]);
    const c = policyFromObject(stored, { trustDomain: TD });
    expect(c.mode).toBe('enforce');
    expect(c.uid).toBe(stored.metadata?.uid);
    expect(c.policy.requires(`spiffe://${TD}/ns/shop/sa/web`, `spiffe://${TD}/ns/shop/sa/api`)).toBe(true);
    expect(c.policy.requires(`spiffe://${TD}/ns/pay-eu/sa/x`, `spiffe://${TD}/ns/pay/sa/y`)).toBe(true);

    const permissive = await kube.json<MutualAuthPolicyObject>('POST', BASE, {
      body: policy('rollout', { mode: 'permissive', rules: [] }),
    });
    expect(policyFromObject(permissive, { trustDomain: TD }).mode).toBe('permissive');
  });

  const invalid: [string, unknown, RegExp][] = [
    ['an unknown mode', { mode: 'audit', rules: [] }, /spec\.mode: Unsupported value: "audit"/],
    ['no rules', {}, /spec\.rules: Required value/],
    [
      'both spiffeId and namespace',
      {
        rules: [
          { name: 'r', from: { spiffeId: `spiffe://${TD}/a`, namespace: 'a' }, to: { namespace: 'b' } },
        ],
      },
      /set exactly one of spiffeId or namespace/,
    ],
    [
      'neither spiffeId nor namespace',
      { rules: [{ name: 'r', from: {}, to: { namespace: 'b' } }] },
      /set exactly one of spiffeId or namespace/,
    ],
    [
      'serviceAccount without namespace',
      { rules: [{ name: 'r', from: { serviceAccount: 'web', spiffeId: '*' }, to: { namespace: 'b' } }] },
      /serviceAccount needs namespace/,
    ],
    [
      'a spiffeId that is not a SPIFFE ID or pattern',
      { rules: [{ name: 'r', from: { spiffeId: 'https://example.org/a' }, to: { namespace: 'b' } }] },
      /spec\.rules\[0\]\.from\.spiffeId: Invalid value/,
    ],
    [
      'a namespace that is not a DNS label',
      { rules: [{ name: 'r', from: { namespace: 'Shop_1' }, to: { namespace: 'b' } }] },
      /spec\.rules\[0\]\.from\.namespace: Invalid value/,
    ],
    [
      'duplicate rule names',
      {
        rules: [
          { name: 'r', from: { namespace: 'a' }, to: { namespace: 'b' } },
          { name: 'r', from: { namespace: 'c' }, to: { namespace: 'd' } },
        ],
      },
      /spec\.rules\[1\]: Duplicate value/,
    ],
    [
      'an unknown auth',
      { rules: [{ name: 'r', from: { namespace: 'a' }, to: { namespace: 'b' }, auth: 'none' }] },
      /spec\.rules\[0\]\.auth: Unsupported value: "none"/,
    ],
    [
      'a rule without "to"',
      { rules: [{ name: 'r', from: { namespace: 'a' } }] },
      /spec\.rules\[0\]\.to: Required value/,
    ],
  ];

  it.each(invalid)('rejects %s with 422 and says why', async (_what, spec, why) => {
    const r = await kube.request('POST', BASE, { body: policy('bad', spec) });
    expect(r.status).toBe(422);
    const status = JSON.parse(r.body) as { reason: string; message: string };
    expect(status.reason).toBe('Invalid');
    expect(status.message).toMatch(why);
    expect((await kube.request('GET', `${BASE}/bad`)).status).toBe(404);
  });

  it('drops unknown fields (structural pruning), so they never reach the converter', async () => {
    const stored = await kube.json<MutualAuthPolicyObject>('POST', BASE, {
      body: policy('pruned', { rules: [], extra: 'x' }),
    });
    expect(stored.spec).toEqual({ mode: 'enforce', rules: [] });
  });

  it('is cluster-scoped', async () => {
    const r = await kube.request(
      'POST',
      `/apis/${MUTUAL_AUTH_POLICY.apiVersion}/namespaces/default/${MUTUAL_AUTH_POLICY.plural}`,
      {
        body: policy('namespaced', { rules: [] }),
      },
    );
    expect(r.status).toBe(404);
  });

  it('an object the schema accepts but meshauth cannot apply is reported through status.conditions', async () => {
    // "." path segments pass the schema's pattern; the converter refuses them.
    const stored = await kube.json<MutualAuthPolicyObject>('POST', BASE, {
      body: policy('dotted', {
        rules: [{ name: 'r', from: { spiffeId: `spiffe://${TD}/ns/./sa/x` }, to: { namespace: 'b' } }],
      }),
    });
    let error: PolicyObjectError | undefined;
    try {
      policyFromObject(stored, { trustDomain: TD });
    } catch (err) {
      error = err as PolicyObjectError;
    }
    expect(error).toBeInstanceOf(PolicyObjectError);
    const condition = validCondition({ generation: stored.metadata!.generation!, error: error! }, new Date());
    const patched = await kube.json<MutualAuthPolicyObject>('PATCH', `${BASE}/dotted/status`, {
      contentType: 'application/merge-patch+json',
      body: { status: { observedGeneration: stored.metadata!.generation, conditions: [condition] } },
    });
    expect(patched.status?.conditions).toEqual([condition]);
    expect(patched.status?.conditions?.[0]?.message).toMatch(
      /spec\.rules\[0\]\.from: spiffeId .*dot segment/,
    );
    // The status subresource changes status only; spec stays as it was.
    const again = await kube.json<MutualAuthPolicyObject>('PATCH', `${BASE}/dotted/status`, {
      contentType: 'application/merge-patch+json',
      body: { spec: { mode: 'disabled' } },
    });
    expect(again.spec?.mode).toBe('enforce');
    // A status that breaks the condition schema is refused.
    const bad = await kube.request('PATCH', `${BASE}/dotted/status`, {
      contentType: 'application/merge-patch+json',
      body: { status: { conditions: [{ type: 'Valid', status: 'Maybe' }] } },
    });
    expect(bad.status).toBe(422);
  });
});
