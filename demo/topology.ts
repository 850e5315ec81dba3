/**
 * Two simulated Kubernetes nodes in network namespaces:
 *
 *   pod-a1 (web)  pod-a2 (api)          pod-b1 (db)  pod-b2 (cache)
 *        \          /                        \          /
 *       br0 10.90.1.1/24                    br0 10.90.2.1/24
 *        node-a  eth0 192.168.90.1 ---- 192.168.90.2 eth0  node-b
 *
 * Each node namespace routes the other node's pod CIDR over the underlay link; each pod has a
 * default route via its node's bridge. meshauthd runs inside each node namespace.
 *
 * With `cni`, the pod interfaces are made by a reference CNI plugin instead (bridge + host-local:
 * the same picture; ptp + host-local: one veth per pod, routed by the node, no bridge), invoked
 * through the CNI protocol as a container runtime does.
 */
import { join } from 'node:path';
import { cniAdd, cniDel, type CniNetwork, type CniPlugin } from '../test/helpers/cni.js';
import { NetnsLab } from '../test/helpers/netns.js';

export interface PodSpec {
  name: string;
  node: 'node-a' | 'node-b';
  ip: string;
  spiffeId: string;
}

export interface NodeSpec {
  name: 'node-a' | 'node-b';
  underlayIp: string;
  podCidr: string;
  bridgeIp: string;
}

export const TRUST_DOMAIN = 'demo.local';
const id = (sa: string): string => `spiffe://${TRUST_DOMAIN}/ns/demo/sa/${sa}`;

export const NODES: readonly NodeSpec[] = [
  { name: 'node-a', underlayIp: '192.168.90.1', podCidr: '10.90.1.0/24', bridgeIp: '10.90.1.1' },
  { name: 'node-b', underlayIp: '192.168.90.2', podCidr: '10.90.2.0/24', bridgeIp: '10.90.2.1' },
];

export const PODS: readonly PodSpec[] = [
  { name: 'web', node: 'node-a', ip: '10.90.1.11', spiffeId: id('web') },
  { name: 'api', node: 'node-a', ip: '10.90.1.12', spiffeId: id('api') },
  { name: 'db', node: 'node-b', ip: '10.90.2.11', spiffeId: id('db') },
  { name: 'cache', node: 'node-b', ip: '10.90.2.12', spiffeId: id('cache') },
];

export interface Topology {
  lab: NetnsLab;
  /** node name -> namespace */
  nodeNs: Record<string, string>;
  /** pod name -> namespace */
  podNs: Record<string, string>;
  pod(name: string): PodSpec;
  node(name: string): NodeSpec;
}

export interface TopologyOptions {
  /** Route each node's pod CIDR over the underlay (off when WireGuard routes it instead). */
  podRoutes?: boolean;
  /** Make the pods' interfaces with this CNI plugin (and host-local) instead of by hand. */
  cni?: { plugin: CniPlugin; binDir: string; dataDir: string };
}

export function buildTopology(lab: NetnsLab, opts: TopologyOptions = {}): Topology {
  const nodeNs: Record<string, string> = {};
  const podNs: Record<string, string> = {};
  for (const n of NODES) {
    const ns = lab.addNamespace(n.name);
    nodeNs[n.name] = ns;
    lab.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    if (opts.cni) continue;
    lab.exec(ns, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    lab.exec(ns, 'ip', ['addr', 'add', `${n.bridgeIp}/24`, 'dev', 'br0']);
    lab.exec(ns, 'ip', ['link', 'set', 'br0', 'up']);
  }
  const [a, b] = NODES as [NodeSpec, NodeSpec];
  lab.link(
    { ns: nodeNs[a.name]!, ifname: 'eth0', addr: `${a.underlayIp}/24` },
    { ns: nodeNs[b.name]!, ifname: 'eth0', addr: `${b.underlayIp}/24` },
  );
  if (opts.podRoutes ?? true) {
    lab.exec(nodeNs[a.name]!, 'ip', ['route', 'add', b.podCidr, 'via', b.underlayIp]);
    lab.exec(nodeNs[b.name]!, 'ip', ['route', 'add', a.podCidr, 'via', a.underlayIp]);
  }

  const cni = opts.cni;
  const network = (n: NodeSpec): CniNetwork | undefined =>
    cni && {
      binDir: cni.binDir,
      plugin: cni.plugin,
      name: `meshauth-${cni.plugin}`,
      subnet: n.podCidr,
      gateway: n.bridgeIp,
      dataDir: join(cni.dataDir, n.name),
      bridge: 'br0',
    };
  for (const p of PODS) {
    const node = NODES.find((n) => n.name === p.node)!;
    const ns = lab.addNamespace(p.name);
    podNs[p.name] = ns;
    const net = network(node);
    if (net) {
      // as a runtime does: ADD when the sandbox is created, DEL before it is destroyed
      const inv = { nodeNs: nodeNs[node.name]!, podNs: ns, containerId: ns, ip: p.ip };
      const result = cniAdd(net, inv);
      const got = result.ips?.map((i) => i.address.split('/')[0]);
      if (got?.[0] !== p.ip)
        throw new Error(`topology: CNI ADD gave ${p.name} ${got?.join(',')}, not ${p.ip}`);
      lab.onCleanup(() => cniDel(net, inv));
      continue;
    }
    lab.link(
      { ns, ifname: 'eth0', addr: `${p.ip}/24` },
      { ns: nodeNs[node.name]!, ifname: `veth-${p.name}` },
    );
    lab.exec(nodeNs[node.name]!, 'ip', ['link', 'set', `veth-${p.name}`, 'master', 'br0']);
    lab.exec(ns, 'ip', ['route', 'add', 'default', 'via', node.bridgeIp]);
  }
  return {
    lab,
    nodeNs,
    podNs,
    pod: (name) => {
      const p = PODS.find((x) => x.name === name);
      if (!p) throw new Error(`topology: no pod ${name}`);
      return p;
    },
    node: (name) => {
      const n = NODES.find((x) => x.name === name);
      if (!n) throw new Error(`topology: no node ${name}`);
      return n;
    },
  };
}
