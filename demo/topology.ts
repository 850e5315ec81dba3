/**
 * Simulated Kubernetes nodes in network namespaces. Two nodes (the default):
 *
 *   pod-a1 (web)  pod-a2 (api)          pod-b1 (db)  pod-b2 (cache)
 *        \          /                        \          /
 *       br0 10.90.1.1/24                    br0 10.90.2.1/24
 *        node-a  eth0 192.168.90.1 ---- 192.168.90.2 eth0  node-b
 *
 * With three or more nodes the underlay is a bridge in a namespace of its own, one port per node
 * (and per extra namespace attached with `attachUnderlay`, such as a relay's), as a top-of-rack
 * switch joins a cluster's nodes:
 *
 *   node-a eth0 192.168.90.1 ─┐
 *   node-b eth0 192.168.90.2 ─┼─ br0 (underlay namespace, no address)
 *   node-c eth0 192.168.90.3 ─┘
 *
 * Node i (0-based) is node-<letter>, underlay 192.168.90.<i+1>, pods in 10.90.<i+1>.0/24 with the
 * node's bridge at .1 and two pods at .11 and .12 (node-c: queue, worker). Each node namespace
 * routes every other node's pod CIDR over the underlay; each pod has a default route via its
 * node's bridge. meshauthd runs inside each node namespace.
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
  node: string;
  ip: string;
  spiffeId: string;
}

export interface NodeSpec {
  name: string;
  underlayIp: string;
  podCidr: string;
  bridgeIp: string;
}

export const TRUST_DOMAIN = 'demo.local';
const id = (sa: string): string => `spiffe://${TRUST_DOMAIN}/ns/demo/sa/${sa}`;

/** Most nodes a topology may have (node-a .. node-h). */
export const MAX_NODES = 8;
const LETTERS = 'abcdefgh';
// the pods of the first nodes keep the names the demo and the tests speak of
const NAMED_PODS: readonly (readonly [string, string])[] = [
  ['web', 'api'],
  ['db', 'cache'],
  ['queue', 'worker'],
];

/**
 * The nodes and pods of a cluster of `count` nodes (2..MAX_NODES), laid out as in the picture
 * above; the first two are always NODES and PODS. Throws on any other count.
 */
export function clusterLayout(count: number): { nodes: NodeSpec[]; pods: PodSpec[] } {
  if (!Number.isInteger(count) || count < 2 || count > MAX_NODES)
    throw new Error(`topology: ${count} nodes: expected a whole number in 2..${MAX_NODES}`);
  const nodes: NodeSpec[] = [];
  const pods: PodSpec[] = [];
  for (let i = 0; i < count; i++) {
    const letter = LETTERS[i]!;
    const name = `node-${letter}`;
    nodes.push({
      name,
      underlayIp: `192.168.90.${i + 1}`,
      podCidr: `10.90.${i + 1}.0/24`,
      bridgeIp: `10.90.${i + 1}.1`,
    });
    const names = NAMED_PODS[i] ?? [`pod-${letter}1`, `pod-${letter}2`];
    names.forEach((pod, j) =>
      pods.push({ name: pod, node: name, ip: `10.90.${i + 1}.${11 + j}`, spiffeId: id(pod) }),
    );
  }
  return { nodes, pods };
}

/** The two-node cluster's nodes and pods (the default topology). */
export const NODES: readonly NodeSpec[] = clusterLayout(2).nodes;
export const PODS: readonly PodSpec[] = clusterLayout(2).pods;

/** SPIFFE ID of a pod of any layout (web, db, queue, pod-d1, ...). */
export function podSpiffeId(name: string): string {
  const p = clusterLayout(MAX_NODES).pods.find((x) => x.name === name);
  if (!p) throw new Error(`topology: no pod ${name}`);
  return p.spiffeId;
}

export interface Topology {
  lab: NetnsLab;
  /** This topology's nodes and pods, in order (NODES and PODS for two nodes). */
  nodes: readonly NodeSpec[];
  pods: readonly PodSpec[];
  /** The underlay bridge's namespace (three or more nodes), else undefined (a veth pair). */
  underlayNs: string | undefined;
  /** node name -> namespace */
  nodeNs: Record<string, string>;
  /** pod name -> namespace */
  podNs: Record<string, string>;
  pod(name: string): PodSpec;
  node(name: string): NodeSpec;
  /**
   * Gives namespace `ns` an interface `ifname` with address `addr` ("192.168.90.100/24") on the
   * underlay bridge, as another machine on the nodes' network. Needs the bridge underlay.
   */
  attachUnderlay(ns: string, ifname: string, addr: string): void;
}

export interface TopologyOptions {
  /** How many nodes (2..MAX_NODES, default 2). */
  nodes?: number;
  /**
   * The underlay: `veth` (one pair, two nodes only) or `bridge` (a bridge in its own namespace).
   * Default: veth for two nodes, bridge for more.
   */
  underlay?: 'veth' | 'bridge';
  /** Route each node's pod CIDR over the underlay (off when WireGuard routes it instead). */
  podRoutes?: boolean;
  /** Make the pods' interfaces with this CNI plugin (and host-local) instead of by hand. */
  cni?: { plugin: CniPlugin; binDir: string; dataDir: string };
}

export function buildTopology(lab: NetnsLab, opts: TopologyOptions = {}): Topology {
  const { nodes, pods } = clusterLayout(opts.nodes ?? 2);
  const underlay = opts.underlay ?? (nodes.length === 2 ? 'veth' : 'bridge');
  if (underlay === 'veth' && nodes.length !== 2)
    throw new Error(`topology: a veth underlay joins two nodes, not ${nodes.length}`);
  const nodeNs: Record<string, string> = {};
  const podNs: Record<string, string> = {};
  for (const n of nodes) {
    const ns = lab.addNamespace(n.name);
    nodeNs[n.name] = ns;
    lab.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    if (opts.cni) continue;
    lab.exec(ns, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    lab.exec(ns, 'ip', ['addr', 'add', `${n.bridgeIp}/24`, 'dev', 'br0']);
    lab.exec(ns, 'ip', ['link', 'set', 'br0', 'up']);
  }
  let underlayNs: string | undefined;
  let ports = 0;
  const attachUnderlay = (ns: string, ifname: string, addr: string): void => {
    if (!underlayNs) throw new Error('topology: attachUnderlay needs the bridge underlay');
    const port = `port${ports++}`;
    lab.link({ ns, ifname, addr }, { ns: underlayNs, ifname: port });
    lab.exec(underlayNs, 'ip', ['link', 'set', port, 'master', 'br0']);
  };
  if (underlay === 'veth') {
    const [a, b] = nodes as [NodeSpec, NodeSpec];
    lab.link(
      { ns: nodeNs[a.name]!, ifname: 'eth0', addr: `${a.underlayIp}/24` },
      { ns: nodeNs[b.name]!, ifname: 'eth0', addr: `${b.underlayIp}/24` },
    );
  } else {
    underlayNs = lab.addNamespace('underlay');
    lab.exec(underlayNs, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    lab.exec(underlayNs, 'ip', ['link', 'set', 'br0', 'up']);
    for (const n of nodes) attachUnderlay(nodeNs[n.name]!, 'eth0', `${n.underlayIp}/24`);
  }
  if (opts.podRoutes ?? true) {
    for (const n of nodes)
      for (const other of nodes)
        if (other !== n)
          lab.exec(nodeNs[n.name]!, 'ip', ['route', 'add', other.podCidr, 'via', other.underlayIp]);
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
  for (const p of pods) {
    const node = nodes.find((n) => n.name === p.node)!;
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
    nodes,
    pods,
    underlayNs,
    nodeNs,
    podNs,
    attachUnderlay,
    pod: (name) => {
      const p = pods.find((x) => x.name === name);
      if (!p) throw new Error(`topology: no pod ${name}`);
      return p;
    },
    node: (name) => {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`topology: no node ${name}`);
      return n;
    },
  };
}
