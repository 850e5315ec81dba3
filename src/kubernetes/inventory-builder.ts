import { cidrContains, parseCidr, type Cidr } from '../config/index.js';
import type { InventoryData, InventoryNode, InventoryWorkload } from '../inventory/index.js';

/** A workload candidate with what decides conflicts. */
export interface PodEntry {
  workload: InventoryWorkload & { name: string };
  /** metadata.creationTimestamp in ms; the API server writes it with one-second resolution. */
  createdAtMs: number;
  /**
   * When the source saw the pod take the newest of its addresses, as a counter (larger is later;
   * 0 when unknown). Informer events of one resource arrive in the API server's write order, so
   * of two pods created within the same second the one seen taking the address later holds it.
   */
  claimedAt: number;
}

/** Why an object (or one of its fields) did not make it into the inventory. */
export interface Exclusion {
  kind: 'pod' | 'node';
  key: string;
  reason: string;
  detail: string;
}

/**
 * Builds inventory content that passes the inventory's cross-reference checks from whatever the
 * API server holds, resolving conflicts instead of rejecting the whole content:
 * - a node whose address another node (first by name) already has is left out;
 * - a pod CIDR that overlaps one of an earlier node is left out;
 * - a pod on a node that is not (or not validly) in the inventory is left out until it is;
 * - an address claimed by two pods goes to the newest pod (creationTimestamp; within the same
 *   second, the later claim; then name): the IP was reused and the old pod's entry is stale (its
 *   deletion or end not seen yet); the old pod keeps its other addresses;
 * - a pod address that is a node address, or outside its node's pod CIDRs, is left out with its
 *   pod (the pod's identity would be pinned to an address it may not own).
 * Output is sorted by name, so equal input gives equal output.
 */
export function buildInventory(
  nodes: Iterable<InventoryNode>,
  pods: Iterable<PodEntry>,
): { data: InventoryData; excluded: Exclusion[] } {
  const excluded: Exclusion[] = [];
  const outNodes: InventoryNode[] = [];
  const byAddress = new Set<string>();
  const cidrs: Array<{ cidr: Cidr; node: string }> = [];
  /** Parsed pod CIDRs kept per node (parsed once per rebuild, not once per pod). */
  const cidrsByNode = new Map<string, Cidr[]>();
  for (const n of [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (byAddress.has(n.address)) {
      excluded.push({ kind: 'node', key: n.name, reason: 'duplicate-address', detail: n.address });
      continue;
    }
    byAddress.add(n.address);
    const keep: string[] = [];
    const parsed: Cidr[] = [];
    for (const text of n.podCIDRs) {
      const c = parseCidr(text) as Cidr;
      const clash = cidrs.find(
        (o) =>
          o.cidr.family === c.family &&
          (cidrContains(o.cidr, text.split('/')[0] as string) ||
            cidrContains(c, o.cidr.text.split('/')[0] as string)),
      );
      if (clash) {
        excluded.push({
          kind: 'node',
          key: n.name,
          reason: 'overlapping-pod-cidr',
          detail: `${text} overlaps ${clash.cidr.text} of ${clash.node}`,
        });
        continue;
      }
      cidrs.push({ cidr: c, node: n.name });
      keep.push(text);
      parsed.push(c);
    }
    outNodes.push(keep.length === n.podCIDRs.length ? n : { ...n, podCIDRs: keep });
    cidrsByNode.set(n.name, parsed);
  }
  const nodeByName = new Map(outNodes.map((n) => [n.name, n]));

  // Newest first, so the first claim of an address wins. creationTimestamp has whole seconds, so a
  // pod that reuses an address within the second its old holder was created is told apart by the
  // order its claim was seen in, not by its name.
  const sorted = [...pods].sort(
    (a, b) =>
      b.createdAtMs - a.createdAtMs ||
      b.claimedAt - a.claimedAt ||
      (a.workload.name < b.workload.name ? -1 : a.workload.name > b.workload.name ? 1 : 0),
  );
  const claimed = new Set<string>();
  const workloads: InventoryWorkload[] = [];
  for (const p of sorted) {
    const w = p.workload;
    const node = nodeByName.get(w.node);
    if (!node) {
      excluded.push({ kind: 'pod', key: w.name, reason: 'unknown-node', detail: w.node });
      continue;
    }
    const nodeCidrs = cidrsByNode.get(node.name) as Cidr[];
    const bad = w.ips.find(
      (ip) => byAddress.has(ip) || (nodeCidrs.length > 0 && !nodeCidrs.some((c) => cidrContains(c, ip))),
    );
    if (bad !== undefined) {
      excluded.push({
        kind: 'pod',
        key: w.name,
        reason: byAddress.has(bad) ? 'node-address' : 'outside-pod-cidr',
        detail: bad,
      });
      continue;
    }
    const ips = w.ips.filter((ip) => !claimed.has(ip));
    if (ips.length < w.ips.length) {
      excluded.push({
        kind: 'pod',
        key: w.name,
        reason: 'address-reused',
        detail: w.ips.filter((ip) => claimed.has(ip)).join(','),
      });
    }
    if (ips.length === 0) continue;
    for (const ip of ips) claimed.add(ip);
    workloads.push(ips.length === w.ips.length ? w : { ...w, ips });
  }
  workloads.sort((a, b) => ((a.name ?? '') < (b.name ?? '') ? -1 : (a.name ?? '') > (b.name ?? '') ? 1 : 0));
  return { data: { nodes: outNodes, workloads }, excluded };
}
