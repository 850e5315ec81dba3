import { join } from 'node:path';
import { Cluster, type ClusterOptions } from '../../demo/cluster.js';
import { buildTopology, podSpiffeId, type TopologyOptions } from '../../demo/topology.js';
import { buildInDemoLab } from '../helpers/demo-lab.js';
import type { NetnsLab } from '../helpers/netns.js';

/** SPIFFE ID of a demo pod (of any node count: web, db, queue, ...). */
export const idOf = (name: string): string => podSpiffeId(name);

export interface DemoCluster {
  cluster: Cluster;
  lab: NetnsLab;
  /** Stops the daemons and removes namespaces, pins and files; safe after a failed start. */
  teardown(): Promise<void>;
}

/**
 * The demo topology (`nodes` nodes, default 2) with one meshauthd per node (started in
 * `startOrder`, default every node in order) and TCP servers on port 8080 in the pods listed in
 * `serve`.
 */
export async function startDemoCluster(
  prefix: string,
  opts: Omit<ClusterOptions, 'workDir' | 'bpffs'> & {
    /** How many nodes (default 2: node-a and node-b over a veth pair; more share a bridge). */
    nodes?: number;
    startOrder?: string[];
    serve?: string[];
    /** Pod interfaces from a reference CNI plugin instead of the hand-built bridge. */
    cni?: Omit<NonNullable<TopologyOptions['cni']>, 'dataDir'>;
  },
): Promise<DemoCluster> {
  return buildInDemoLab(prefix, async ({ lab, workDir, bpffs, own }) => {
    const topo = buildTopology(lab, {
      ...(opts.nodes !== undefined ? { nodes: opts.nodes } : {}),
      podRoutes: !opts.wireguard,
      ...(opts.cni ? { cni: { ...opts.cni, dataDir: join(workDir, 'cni') } } : {}),
    });
    const cluster = own(new Cluster(topo, { ...opts, workDir, bpffs }));
    await cluster.init();
    for (const node of opts.startOrder ?? topo.nodes.map((n) => n.name)) await cluster.start(node);
    for (const pod of opts.serve ?? ['db', 'cache']) cluster.serve(pod, 8080);
    await new Promise((r) => setTimeout(r, 300));
    return { cluster };
  });
}
