import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, mountBpffs, type ClusterOptions } from '../../demo/cluster.js';
import { buildTopology, PODS, type TopologyOptions } from '../../demo/topology.js';
import { NetnsLab } from '../helpers/netns.js';

/** SPIFFE ID of a demo pod. */
export const idOf = (name: string): string => PODS.find((p) => p.name === name)!.spiffeId;

export interface DemoCluster {
  cluster: Cluster;
  lab: NetnsLab;
  /** Stops the daemons and removes namespaces, pins and files; safe after a failed start. */
  teardown(): Promise<void>;
}

/**
 * The demo topology with one meshauthd per node (started in `startOrder`) and TCP servers on port
 * 8080 in the pods listed in `serve`.
 */
export async function startDemoCluster(
  prefix: string,
  opts: Omit<ClusterOptions, 'workDir' | 'bpffs'> & {
    startOrder?: string[];
    serve?: string[];
    /** Pod interfaces from a reference CNI plugin instead of the hand-built bridge. */
    cni?: Omit<NonNullable<TopologyOptions['cni']>, 'dataDir'>;
  },
): Promise<DemoCluster> {
  const lab = new NetnsLab(prefix);
  const workDir = mkdtempSync(join(tmpdir(), `meshauth-${prefix}-`));
  const bpffs = join(workDir, 'bpffs');
  let unmount: () => void = () => {};
  let cluster: Cluster | undefined;
  const teardown = async (): Promise<void> => {
    await cluster?.stopAll();
    await lab.cleanup();
    unmount();
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    unmount = mountBpffs(bpffs);
    const topo = buildTopology(lab, {
      podRoutes: !opts.wireguard,
      ...(opts.cni ? { cni: { ...opts.cni, dataDir: join(workDir, 'cni') } } : {}),
    });
    cluster = new Cluster(topo, { ...opts, workDir, bpffs });
    await cluster.init();
    for (const node of opts.startOrder ?? ['node-a', 'node-b']) await cluster.start(node);
    for (const pod of opts.serve ?? ['db', 'cache']) cluster.serve(pod, 8080);
    await new Promise((r) => setTimeout(r, 300));
    return { cluster, lab, teardown };
  } catch (err) {
    await teardown();
    throw err;
  }
}
