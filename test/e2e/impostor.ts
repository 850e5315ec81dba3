import { join } from 'node:path';
import type { Cluster } from '../../demo/cluster.js';
import { PACKAGE_ROOT } from '../../demo/cluster.js';
import { NODES, PODS, type Topology } from '../../demo/topology.js';

export interface Impostor {
  output(): string;
  stop(): Promise<void>;
}

/** Starts demo/impostor on a node's handshake (and channel) address (the node's meshauthd must be stopped). */
export async function startImpostor(
  topo: Topology,
  cluster: Cluster,
  opts: {
    node: string;
    kind: 'untrusted-ca' | 'wrong-id' | 'critical-extension';
    /** Also accept node channels on this port (auth.mode channel). */
    channelPort?: number;
  },
): Promise<Impostor> {
  const node = NODES.find((n) => n.name === opts.node)!;
  const ids = PODS.filter((p) => p.node === opts.node).map((p) => p.spiffeId);
  const child = topo.lab.spawn(topo.nodeNs[opts.node]!, 'node', [
    join(PACKAGE_ROOT, 'dist/demo/impostor.js'),
    '--kind',
    opts.kind,
    '--listen',
    node.underlayIp,
    '--node',
    opts.node,
    '--ca-dir',
    cluster.caDir,
    '--ids',
    ids.join(','),
    ...(opts.channelPort !== undefined ? ['--channel-port', String(opts.channelPort)] : []),
  ]);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 15_000;
  while (!out.includes('listening\n')) {
    if (child.exitCode !== null) throw new Error(`impostor exited (${child.exitCode}): ${out}`);
    if (Date.now() > deadline) throw new Error(`impostor not listening after 15 s: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    output: () => out,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
