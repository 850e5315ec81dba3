/**
 * A Kubernetes control plane for the namespace clusters of demo/topology.ts, reachable from the
 * node namespaces the way a real cluster's API server is reachable from its nodes: over a network.
 *
 *   node-a  kube0 <net>.11 ─┐
 *   node-b  kube0 <net>.12 ─┼─ br0 <net>.1  control-plane namespace: etcd + kube-apiserver
 *   test host  <tag>h <net>.254 ─┘                  (both listen on <net>.1)
 *
 * etcd and kube-apiserver run inside a network namespace of their own; each node namespace gets a
 * second interface on the control plane's bridge, and so does the test process (root namespace),
 * which acts as the cluster admin. Nothing of it is routed anywhere else. <net> is a 192.168.x /24
 * not routed in the root namespace yet, so concurrent runs do not collide.
 *
 * meshauthd gets the credentials it has in a cluster: a token of the ServiceAccount
 * meshauth/meshauthd, bound to a host-network "meshauthd" pod on its node (so the API server puts
 * the node name in the token's user info, as for a projected token), authorized by the ClusterRole
 * and own-node admission policy from deploy/rbac. Not an admin.
 */
import { randomInt } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { MUTUAL_AUTH_POLICY } from '../../src/kubernetes/index.js';
import { packageRoot } from '../../src/package-root.js';
import { KubeApiServer } from './kube-apiserver.js';
import { run, type NetnsLab } from './netns.js';

const MERGE = 'application/merge-patch+json';

/** A node of the namespace cluster as the API server should know it. */
export interface KubeNodeSpec {
  name: string;
  /** The node's network namespace (it gets the kube0 interface). */
  ns: string;
  /** status.addresses InternalIP: the handshake address. */
  internalIp: string;
  podCidrs: string[];
}

export interface KubePodSpec {
  namespace: string;
  name: string;
  node: string;
  serviceAccount: string;
  ips: string[];
}

/** The repository's manifests under deploy/, parsed. */
export function deployManifests(file: string): Record<string, unknown>[] {
  // From the package root: this file also runs compiled (dist/test/helpers) under the benchmarks.
  return parseAllDocuments(readFileSync(join(packageRoot(), 'deploy', file), 'utf8')).map(
    (d) => d.toJSON() as Record<string, unknown>,
  );
}

/** Path of the MutualAuthPolicy collection (cluster-scoped). */
export const POLICIES = `/apis/${MUTUAL_AUTH_POLICY.apiVersion}/${MUTUAL_AUTH_POLICY.plural}`;

/** A MutualAuthPolicy selector of a service account in the demo namespace. */
export const demoServiceAccount = (name: string) => ({ namespace: 'demo', serviceAccount: name });
/** A MutualAuthPolicy rule `<from>-to-<to>` between two service accounts of the demo namespace. */
export const demoRule = (from: string, to: string) => ({
  name: `${from}-to-${to}`,
  from: demoServiceAccount(from),
  to: demoServiceAccount(to),
});

/** A 192.168.x.0/24 prefix ("192.168.x") with no route in the root namespace. */
function unusedNet(): string {
  const routes = run('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (let i = 0; i < 50; i++) {
    const net = `192.168.${randomInt(160, 240)}`;
    if (!routes.includes(`${net}.`)) return net;
  }
  throw new Error('kube control plane: no free 192.168.x.0/24 for the control-plane bridge');
}

export class KubeControlPlane {
  private constructor(
    readonly kube: KubeApiServer,
    /** The control plane's namespace. */
    readonly ns: string,
    /** The bridge's /24 prefix, "192.168.x". */
    readonly net: string,
  ) {}

  /**
   * Builds the control-plane namespace and links, starts etcd + kube-apiserver there, installs
   * the CRD, RBAC and admission policy from deploy/, creates the Node objects and writes one
   * meshauthd kubeconfig per node to `kubeconfigPath(node)`. Everything is torn down by
   * lab.cleanup() (the API server first, then links and namespaces), also after a failed start.
   */
  static async start(opts: {
    lab: NetnsLab;
    bin: string;
    nodes: readonly KubeNodeSpec[];
    kubeconfigPath: (node: string) => string;
  }): Promise<KubeControlPlane> {
    const { lab } = opts;
    const net = unusedNet();
    const ns = lab.addNamespace('cp');
    lab.exec(ns, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    lab.exec(ns, 'ip', ['addr', 'add', `${net}.1/24`, 'dev', 'br0']);
    lab.exec(ns, 'ip', ['link', 'set', 'br0', 'up']);
    opts.nodes.forEach((n, i) => {
      lab.link({ ns: n.ns, ifname: 'kube0', addr: `${net}.${11 + i}/24` }, { ns, ifname: `port${i}` });
      lab.exec(ns, 'ip', ['link', 'set', `port${i}`, 'master', 'br0']);
    });
    // The test host's port: a veth whose other end is on the bridge.
    const host = `${lab.tag}h`.slice(-15);
    const peer = `${lab.tag}p`.slice(-15);
    run('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
    lab.onCleanup(() => {
      try {
        run('ip', ['link', 'del', host]);
      } catch {
        /* gone with the namespace */
      }
    });
    run('ip', ['link', 'set', peer, 'netns', ns]);
    lab.exec(ns, 'ip', ['link', 'set', peer, 'master', 'br0']);
    lab.exec(ns, 'ip', ['link', 'set', peer, 'up']);
    run('ip', ['addr', 'add', `${net}.254/24`, 'dev', host]);
    run('ip', ['link', 'set', host, 'up']);

    const kube = await KubeApiServer.start(opts.bin, { netns: ns, address: `${net}.1` });
    lab.onCleanup(() => kube.close());
    const cp = new KubeControlPlane(kube, ns, net);
    await kube.apply(deployManifests('crds/meshauth.io_mutualauthpolicies.yaml'));
    await kube.waitForCrd(MUTUAL_AUTH_POLICY.crdName);
    await kube.ensureNamespace('meshauth');
    await kube.apply([
      ...deployManifests('rbac/meshauthd-rbac.yaml'),
      ...deployManifests('rbac/meshauthd-own-node.yaml'),
    ]);
    for (const n of opts.nodes) {
      await kube.json('POST', '/api/v1/nodes', {
        body: {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name } },
          spec: { podCIDR: n.podCidrs[0], podCIDRs: n.podCidrs },
        },
      });
      await kube.json('PATCH', `/api/v1/nodes/${n.name}/status`, {
        contentType: MERGE,
        body: { status: { addresses: [{ type: 'InternalIP', address: n.internalIp }] } },
      });
      // meshauthd's own pod: host network (so never a workload), its token bound to it.
      const pod = await kube.json<{ metadata: { uid: string; name: string } }>(
        'POST',
        '/api/v1/namespaces/meshauth/pods',
        {
          body: {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { name: `meshauthd-${n.name}` },
            spec: {
              nodeName: n.name,
              hostNetwork: true,
              serviceAccountName: 'meshauthd',
              automountServiceAccountToken: false,
              containers: [{ name: 'meshauthd', image: 'meshauth' }],
            },
          },
        },
      );
      const token = await kube.serviceAccountToken('meshauth', 'meshauthd', {
        boundPod: { name: pod.metadata.name, uid: pod.metadata.uid },
      });
      const { kubeconfigYaml } = await kube.tokenKubeconfig(`meshauthd-${n.name}`, token);
      writeFileSync(opts.kubeconfigPath(n.name), kubeconfigYaml, { mode: 0o600 });
    }
    return cp;
  }

  /**
   * Creates a pod bound to its node and writes its status as the kubelet does (phase Running,
   * status.podIPs). Resolves with performance.now() at the response to the status write.
   */
  async createPod(p: KubePodSpec): Promise<number> {
    await this.kube.ensureNamespace(p.namespace);
    await this.kube.json('POST', `/api/v1/namespaces/${p.namespace}/pods`, {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: p.name },
        spec: {
          nodeName: p.node,
          serviceAccountName: p.serviceAccount,
          automountServiceAccountToken: false,
          containers: [{ name: 'c', image: 'example.invalid/none' }],
        },
      },
    });
    await this.kube.json('PATCH', `/api/v1/namespaces/${p.namespace}/pods/${p.name}/status`, {
      contentType: MERGE,
      body: { status: { phase: 'Running', podIP: p.ips[0], podIPs: p.ips.map((ip) => ({ ip })) } },
    });
    return performance.now();
  }

  /** Deletes a pod at once (grace period 0). Resolves with performance.now() at the response. */
  async deletePod(namespace: string, name: string): Promise<number> {
    await this.kube.json('DELETE', `/api/v1/namespaces/${namespace}/pods/${name}?gracePeriodSeconds=0`);
    return performance.now();
  }

  /** Creates or replaces (merge patch of spec) a cluster-scoped MutualAuthPolicy. */
  async applyPolicy(name: string, spec: Record<string, unknown>): Promise<void> {
    const r = await this.kube.request('PATCH', `${POLICIES}/${name}`, {
      contentType: MERGE,
      body: { spec },
    });
    if (r.status === 200) return;
    if (r.status !== 404) throw new Error(`PATCH MutualAuthPolicy ${name}: HTTP ${r.status}: ${r.body}`);
    await this.kube.json('POST', POLICIES, {
      body: {
        apiVersion: MUTUAL_AUTH_POLICY.apiVersion,
        kind: MUTUAL_AUTH_POLICY.kind,
        metadata: { name },
        spec,
      },
    });
  }

  async deletePolicy(name: string): Promise<void> {
    await this.kube.json('DELETE', `${POLICIES}/${name}`);
  }

  /** A Node's annotations, read as the admin. */
  async nodeAnnotations(name: string): Promise<Record<string, string>> {
    const n = await this.kube.json<{ metadata: { annotations?: Record<string, string> } }>(
      'GET',
      `/api/v1/nodes/${name}`,
    );
    return n.metadata.annotations ?? {};
  }
}
