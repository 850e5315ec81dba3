import { hostCidr } from '../config/index.js';
import {
  AuthType,
  IDENTITY_UNRESOLVED,
  LOCAL_NODE_ID,
  POLICY_ANY_REMOTE,
  type AuthKey,
  type AuthTypeValue,
  type IpcacheEntry,
  type PolicyKey,
  type PolicyMode,
} from '../datapath/index.js';
import type { Inventory } from '../inventory/index.js';
import type { Policy } from './policy.js';

/** Allocates numeric handles (IdAllocator, or a fake). `idsFor` lets a batch cost one disk write. */
export interface HandleAllocator {
  idFor(key: string): number;
  idsFor?(keys: readonly string[]): number[];
}

export interface CompileNodeStateInput {
  /** The node the state is for (its workloads are "local"). */
  nodeName: string;
  inventory: Inventory;
  policy: Policy;
  /** Handles of SPIFFE IDs. */
  identities: HandleAllocator;
  /** Handles of node names (never asked for `nodeName`: the local node is 0). */
  nodes: HandleAllocator;
  /**
   * Also map remote nodes' pod CIDRs to (identity 0, node id), so the datapath knows which node a
   * pod address not in the inventory lives on. Default false.
   */
  includeRemotePodCidrs?: boolean;
  /**
   * Fail closed for pods not known yet: map every node's pod CIDRs (this node's included) to
   * (IDENTITY_UNRESOLVED, node id), and give every local identity named by an enabled rule the
   * entry (local, IDENTITY_UNRESOLVED) with the strongest mode of its rules, so its traffic with a
   * pod address that has no workload entry yet is dropped (or counted, when permissive) until the
   * pod is known. Overrides includeRemotePodCidrs. Default false.
   */
  unresolvedPodCidrs?: boolean;
}

export interface PolicyEntry {
  key: PolicyKey;
  authType: AuthTypeValue;
  /** How the datapath treats the pair unauthenticated. */
  mode: PolicyMode;
}

export interface NodeState {
  ipcache: IpcacheEntry[];
  policy: PolicyEntry[];
  /** SPIFFE IDs of the workloads on this node, sorted. */
  localSpiffeIds: string[];
  /** Every SPIFFE ID in the inventory and its handle. */
  identities: Map<string, number>;
  /** Every other node and its handle. */
  nodeIds: Map<string, number>;
}

/**
 * Host route text of each address seen (hostCidr parses and formats; a compile maps every workload
 * address, so a change of one pod would otherwise re-format all of them). Bounded: emptied when it
 * outgrows MAX_HOST_ROUTES. Bad input is not cached (hostCidr throws every time, as before).
 */
const hostRoutes = new Map<string, string>();
const MAX_HOST_ROUTES = 1 << 17;

function hostRoute(ip: string): string {
  let r = hostRoutes.get(ip);
  if (r === undefined) {
    r = hostCidr(ip);
    if (hostRoutes.size >= MAX_HOST_ROUTES) hostRoutes.clear();
    hostRoutes.set(ip, r);
  }
  return r;
}

function allocate(alloc: HandleAllocator, keys: string[]): Map<string, number> {
  const ids = alloc.idsFor ? alloc.idsFor(keys) : keys.map((k) => alloc.idFor(k));
  return new Map(keys.map((k, i) => [k, ids[i] as number]));
}

/**
 * The desired content of this node's ipcache and policy maps.
 *
 * ipcache: every workload address as a host route -> (identity, node id; 0 for this node).
 * policy: for each local identity L and each identity R in the inventory (local ones included),
 * (L, R) -> SPIFFE mTLS when a rule covers the pair in either direction; a rule whose other side is
 * "*" gives the single wildcard entry (L, POLICY_ANY_REMOTE) instead. Output is sorted.
 */
export function compileNodeState(input: CompileNodeStateInput): NodeState {
  const { nodeName, inventory, policy } = input;
  if (!inventory.node(nodeName)) {
    throw new RangeError(`compile node state: node "${nodeName}" is not in ${inventory.label}`);
  }
  const allIds = [...new Set(inventory.workloads().map((w) => w.spiffeId))].sort();
  const identities = allocate(input.identities, allIds);
  const otherNodes = inventory
    .nodes()
    .map((n) => n.name)
    .filter((n) => n !== nodeName)
    .sort();
  const nodeIds = allocate(input.nodes, otherNodes);
  const nodeIdOf = (name: string): number =>
    name === nodeName ? LOCAL_NODE_ID : (nodeIds.get(name) as number);

  const ipcache: IpcacheEntry[] = [];
  for (const w of inventory.workloads()) {
    for (const ip of w.ips) {
      ipcache.push({
        cidr: hostRoute(ip),
        identity: identities.get(w.spiffeId) as number,
        nodeId: nodeIdOf(w.node),
      });
    }
  }
  if (input.unresolvedPodCidrs) {
    for (const n of inventory.nodes()) {
      for (const cidr of n.podCIDRs)
        ipcache.push({ cidr, identity: IDENTITY_UNRESOLVED, nodeId: nodeIdOf(n.name) });
    }
  } else if (input.includeRemotePodCidrs) {
    for (const n of inventory.nodes()) {
      if (n.name === nodeName) continue;
      for (const cidr of n.podCIDRs) ipcache.push({ cidr, identity: 0, nodeId: nodeIdOf(n.name) });
    }
  }
  ipcache.sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));

  const localSpiffeIds = inventory.spiffeIdsOnNode(nodeName);
  const entries: PolicyEntry[] = [];
  for (const local of localSpiffeIds) {
    const localId = identities.get(local) as number;
    const anyone = policy.requiresWithAnyone(local);
    if (anyone) {
      entries.push({
        key: { localId, remoteId: POLICY_ANY_REMOTE },
        authType: AuthType.SpiffeMtls,
        mode: anyone.mode === 'permissive' ? 'permissive' : 'enforce',
      });
    }
    for (const remote of allIds) {
      const mode = policy.pairMode(local, remote);
      // A required wildcard covers every remote; a permissive one every permissive pair.
      if (mode === undefined || (anyone && (anyone.mode === 'required' || mode === 'permissive'))) continue;
      entries.push({
        key: { localId, remoteId: identities.get(remote) as number },
        authType: AuthType.SpiffeMtls,
        mode,
      });
    }
    if (input.unresolvedPodCidrs && anyone?.mode !== 'required') {
      const mode = policy.modeWithUnknownPeers(local);
      if (mode) {
        entries.push({
          key: { localId, remoteId: IDENTITY_UNRESOLVED },
          authType: AuthType.SpiffeMtls,
          mode,
        });
      }
    }
  }
  entries.sort((a, b) => a.key.localId - b.key.localId || a.key.remoteId - b.key.remoteId);
  return { ipcache, policy: entries, localSpiffeIds, identities, nodeIds };
}

/**
 * The auth pairs this node initiates before any packet (pre-authentication): every (local
 * workload, workload on another node) pair the policy requires, when this node's name sorts
 * before the other node's. The other node answers as the handshake server and writes its entry
 * from that handshake, so each pair costs one handshake. Handles come from `state` (compiled
 * from the same inventory); a node or identity without a handle there is skipped.
 */
export function preauthPairs(
  state: Pick<NodeState, 'localSpiffeIds' | 'identities' | 'nodeIds'>,
  input: Pick<CompileNodeStateInput, 'nodeName' | 'inventory' | 'policy'>,
): AuthKey[] {
  const { nodeName, inventory, policy } = input;
  const keys: AuthKey[] = [];
  for (const local of state.localSpiffeIds) {
    const localId = state.identities.get(local);
    if (localId === undefined) continue;
    for (const w of inventory.workloads()) {
      if (w.node === nodeName || nodeName > w.node) continue;
      if (!policy.requires(local, w.spiffeId)) continue;
      const remoteNode = state.nodeIds.get(w.node);
      const remoteId = state.identities.get(w.spiffeId);
      if (remoteNode === undefined || remoteId === undefined) continue;
      keys.push({ localId, remoteId, remoteNode, authType: AuthType.SpiffeMtls });
    }
  }
  return keys;
}
