/**
 * Every object the chart renders, for each case of the values matrix, sent to a real
 * kube-apiserver with server-side dry-run (`dryRun=All`, `fieldValidation=Strict`): the API
 * server's own schema, defaulting, admission (priority class lookup) and RBAC checks decide, not a
 * copy of its schemas. The chart's CRD is created for real first, and the example policy validates
 * against it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CHART_DIR, helmBinary, only, renderChart, type K8sObject } from '../../helpers/helm.js';
import { collectionPath, KubeApiServer, kubeBinDir } from '../../helpers/kube-apiserver.js';
import { HELM_VALUE_CASES } from './value-cases.js';

const helm = helmBinary();
const kubeBin = kubeBinDir();
const REPO = join(CHART_DIR, '../../..');

/** Kinds whose CRDs come from other projects (Prometheus Operator); checked client-side only. */
const FOREIGN_KINDS = new Set(['ServiceMonitor']);

describe.skipIf(!helm || !kubeBin)('Helm chart against a real kube-apiserver (server-side dry-run)', () => {
  let api: KubeApiServer;

  beforeAll(async () => {
    api = await KubeApiServer.start(kubeBin as string);
    // the CRD for real, as `helm install` does before the templates
    const crd = only(await renderChart(helm as string, {}), 'CustomResourceDefinition');
    await api.apply([crd]);
    await api.waitForCrd(crd.metadata.name);
    await api.ensureNamespace('meshauth');
  }, 60_000);

  afterAll(async () => {
    await api?.close();
  });

  async function dryRun(o: K8sObject): Promise<{ status: number; body: string }> {
    return api.request('POST', `${collectionPath(o)}?dryRun=All&fieldValidation=Strict`, { body: o });
  }

  /**
   * The Pod the DaemonSet controller would create on node-a from the template: admission plugins
   * that act on Pods (Priority: the priority class must exist) see it only in this form.
   */
  function podOf(ds: K8sObject): K8sObject {
    const t = (ds.spec as { template: { metadata: Record<string, unknown>; spec: Record<string, unknown> } })
      .template;
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        ...t.metadata,
        name: `${ds.metadata.name}-node-a`,
        namespace: ds.metadata.namespace as string,
      },
      spec: { ...structuredClone(t.spec), nodeName: 'node-a' },
    };
  }

  it.each(Object.keys(HELM_VALUE_CASES))(
    '%s: the API server accepts every rendered object',
    async (name) => {
      const objs = await renderChart(helm as string, HELM_VALUE_CASES[name]);
      const checked: string[] = [];
      for (const o of objs) {
        if (o.kind === 'CustomResourceDefinition' || FOREIGN_KINDS.has(o.kind)) continue;
        const r = await dryRun(o);
        expect(r.status, `${o.kind} ${o.metadata.name}: ${r.body}`).toBe(201);
        const back = JSON.parse(r.body) as K8sObject & { spec?: Record<string, unknown> };
        expect(back.kind).toBe(o.kind);
        checked.push(o.kind);
        if (o.kind === 'DaemonSet') {
          const pod = await dryRun(podOf(o));
          expect(pod.status, `Pod of ${o.metadata.name}: ${pod.body}`).toBe(201);
          // the priority class resolved to its value (system-node-critical: 2000001000)
          expect((JSON.parse(pod.body) as { spec: { priority?: number } }).spec.priority).toBe(2000001000);
        }
      }
      expect(checked).toEqual(
        expect.arrayContaining([
          'ServiceAccount',
          'ConfigMap',
          'ClusterRole',
          'ClusterRoleBinding',
          'DaemonSet',
        ]),
      );
      // The own-node admission policy: its CEL expressions are compiled and type-checked by the
      // API server (admissionregistration.k8s.io/v1), unless the case turns it off.
      const policy = ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'];
      const off =
        (HELM_VALUE_CASES[name] as { rbac?: { ownNodePolicy?: boolean } }).rbac?.ownNodePolicy === false;
      if (off) expect(checked.filter((k) => policy.includes(k))).toEqual([]);
      else expect(checked).toEqual(expect.arrayContaining(policy));
    },
    60_000,
  );

  it('rejects what the chart must never render: the API server checks are real', async () => {
    const objs = await renderChart(helm as string, {});
    const ds = structuredClone(only(objs, 'DaemonSet')) as K8sObject & {
      spec: { template: { spec: { priorityClassName: string; containers: Array<Record<string, unknown>> } } };
    };
    // an unknown field fails strict field validation
    (ds.spec.template.spec.containers[0] as Record<string, unknown>)['capabilitiez'] = ['BPF'];
    const unknownField = await dryRun(ds);
    expect(unknownField.status).toBe(400);
    expect(unknownField.body).toMatch(/capabilitiez/);
    // a priority class that does not exist is refused by the Priority admission plugin
    const noPrio = structuredClone(only(objs, 'DaemonSet')) as typeof ds;
    noPrio.spec.template.spec.priorityClassName = 'no-such-priority';
    const prio = await dryRun(podOf(noPrio));
    expect(prio.status).toBe(403);
    expect(prio.body).toMatch(/no-such-priority/);
    // a policy expression that does not compile is refused by the API server's CEL checker
    const vap = structuredClone(only(objs, 'ValidatingAdmissionPolicy')) as K8sObject & {
      spec: { validations: Array<{ expression: string }> };
    };
    vap.spec.validations[0]!.expression = 'object.metadata.name ==';
    const cel = await dryRun(vap);
    expect(cel.status).toBe(422);
    expect(cel.body).toMatch(/validations\[0\]\.expression/);
  });

  it('the example MutualAuthPolicy validates against the chart CRD, a malformed one is refused', async () => {
    const example = parse(readFileSync(join(REPO, 'examples/mutualauthpolicy.yaml'), 'utf8')) as K8sObject;
    const ok = await dryRun(example);
    expect(ok.status, ok.body).toBe(201);
    const bad = structuredClone(example) as K8sObject & { spec: { mode: string } };
    bad.spec.mode = 'audit';
    const refused = await dryRun(bad);
    expect(refused.status).toBe(422);
    expect(refused.body).toMatch(/spec\.mode/);
  });
});
