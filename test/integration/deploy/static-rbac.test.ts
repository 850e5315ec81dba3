/**
 * The static RBAC manifests in deploy/rbac (for installs without Helm) and the chart's RBAC are one
 * definition: rendered with the same names, the chart's ClusterRole, ClusterRoleBinding and own-node
 * ValidatingAdmissionPolicy (+ binding) carry exactly the rules, subjects and validations of the
 * static files. A change to one without the other fails here.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHART_DIR, helmBinary, only, renderChart, type K8sObject } from '../../helpers/helm.js';
import { readManifests } from '../../helpers/spire.js';

const helm = helmBinary();
const RBAC_DIR = join(CHART_DIR, '../../rbac');

/** The static objects of a file by kind (each kind once). */
function staticObjects(file: string): Map<string, K8sObject> {
  const m = new Map<string, K8sObject>();
  for (const o of readManifests(join(RBAC_DIR, file)) as unknown as K8sObject[]) {
    expect(m.has(o.kind), `${file}: one ${o.kind}`).toBe(false);
    m.set(o.kind, o);
  }
  return m;
}

describe.skipIf(!helm)('deploy/rbac equals the chart’s RBAC', () => {
  // The static files name everything "meshauthd" in namespace "meshauth".
  const values = { fullnameOverride: 'meshauthd' };

  it('meshauthd-rbac.yaml: the ClusterRole rules and the binding are the chart’s', async () => {
    const objs = await renderChart(helm as string, values);
    const want = staticObjects('meshauthd-rbac.yaml');
    const role = only(objs, 'ClusterRole');
    expect(role.metadata.name).toBe(want.get('ClusterRole')!.metadata.name);
    expect(role['rules']).toEqual(want.get('ClusterRole')!['rules']);
    const binding = only(objs, 'ClusterRoleBinding');
    expect(binding.metadata.name).toBe(want.get('ClusterRoleBinding')!.metadata.name);
    expect(binding['roleRef']).toEqual(want.get('ClusterRoleBinding')!['roleRef']);
    expect(binding['subjects']).toEqual(want.get('ClusterRoleBinding')!['subjects']);
    expect(only(objs, 'ServiceAccount').metadata).toMatchObject({ name: 'meshauthd', namespace: 'meshauth' });
    expect([...want.keys()].sort()).toEqual(['ClusterRole', 'ClusterRoleBinding']);
  });

  it('meshauthd-own-node.yaml: the ValidatingAdmissionPolicy and its binding are the chart’s', async () => {
    const objs = await renderChart(helm as string, values);
    const want = staticObjects('meshauthd-own-node.yaml');
    expect([...want.keys()].sort()).toEqual([
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicyBinding',
    ]);
    for (const kind of want.keys()) {
      const got = only(objs, kind);
      expect(got.metadata.name, kind).toBe(want.get(kind)!.metadata.name);
      expect(got['spec'], kind).toEqual(want.get(kind)!['spec']);
    }
  });

  it('the policy follows the release: its namespace and service account name the caller it limits', async () => {
    const objs = await renderChart(
      helm as string,
      { serviceAccount: { name: 'auth-daemon' } },
      {
        namespace: 'security',
      },
    );
    const vap = only(objs, 'ValidatingAdmissionPolicy') as K8sObject & {
      spec: { matchConditions: Array<{ expression: string }> };
    };
    expect(vap.spec.matchConditions[0]!.expression).toBe(
      "request.userInfo.username == 'system:serviceaccount:security:auth-daemon'",
    );
    const off = await renderChart(helm as string, { rbac: { ownNodePolicy: false } });
    expect(off.filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy'))).toEqual([]);
    expect(off.map((o) => o.kind)).toContain('ClusterRole');
  });
});
