import { cidrContains, parseCidr, type Cidr } from '../config/index.js';
import type { InventoryData } from './types.js';

/**
 * Cross-reference checks the schema cannot do: unique names, addresses and IPs, pod CIDRs that
 * do not overlap, workloads placed on listed nodes and inside their node's pod CIDRs.
 * Returns problems as [path, reason].
 */
export function checkInventory(data: InventoryData): Array<[string, string]> {
  const problems: Array<[string, string]> = [];
  const nodeIndex = new Map<string, number>();
  const addrIndex = new Map<string, number>();
  const cidrs: Array<{ node: number; cidr: Cidr; j: number }> = [];
  /** Parsed pod CIDRs by node index (parsed once, not once per workload address). */
  const nodeCidrs: Cidr[][] = [];
  data.nodes.forEach((n, i) => {
    const dup = nodeIndex.get(n.name);
    if (dup !== undefined)
      problems.push([`nodes[${i}].name`, `duplicate node name "${n.name}" (also nodes[${dup}])`]);
    else nodeIndex.set(n.name, i);
    const dupAddr = addrIndex.get(n.address);
    if (dupAddr !== undefined) {
      problems.push([`nodes[${i}].address`, `address ${n.address} is also the address of nodes[${dupAddr}]`]);
    } else addrIndex.set(n.address, i);
    nodeCidrs[i] = [];
    n.podCIDRs.forEach((text, j) => {
      const cidr = parseCidr(text) as Cidr;
      nodeCidrs[i]?.push(cidr);
      for (const other of cidrs) {
        if (other.cidr.family !== cidr.family) continue;
        const shorter = other.cidr.prefix <= cidr.prefix ? other.cidr : cidr;
        const longer = shorter === cidr ? other.cidr : cidr;
        const bits = cidr.family === 4 ? 32 : 128;
        if (
          longer.network >> BigInt(bits - shorter.prefix) ===
          shorter.network >> BigInt(bits - shorter.prefix)
        ) {
          problems.push([
            `nodes[${i}].podCIDRs[${j}]`,
            `${cidr.text} overlaps ${other.cidr.text} (nodes[${other.node}].podCIDRs[${other.j}])`,
          ]);
        }
      }
      cidrs.push({ node: i, cidr, j });
    });
  });

  const names = new Map<string, number>();
  /** Address -> [workload index, address index]; paths are only formatted for problems. */
  const ips = new Map<string, [number, number]>();
  data.workloads.forEach((w, i) => {
    if (w.name !== undefined) {
      const dup = names.get(w.name);
      if (dup !== undefined)
        problems.push([
          `workloads[${i}].name`,
          `duplicate workload name "${w.name}" (also workloads[${dup}])`,
        ]);
      else names.set(w.name, i);
    }
    const ni = nodeIndex.get(w.node);
    if (ni === undefined) {
      problems.push([
        `workloads[${i}].node`,
        `unknown node "${w.node}" (nodes: ${[...nodeIndex.keys()].join(', ')})`,
      ]);
    }
    const node = ni === undefined ? undefined : data.nodes[ni];
    w.ips.forEach((ip, j) => {
      const path = (): string => `workloads[${i}].ips[${j}]`;
      const dup = ips.get(ip);
      if (dup !== undefined)
        problems.push([path(), `address ${ip} is also used by workloads[${dup[0]}].ips[${dup[1]}]`]);
      else ips.set(ip, [i, j]);
      if (addrIndex.has(ip))
        problems.push([path(), `address ${ip} is a node address (nodes[${addrIndex.get(ip)}])`]);
      if (
        node &&
        node.podCIDRs.length > 0 &&
        !(nodeCidrs[ni as number] as Cidr[]).some((c) => cidrContains(c, ip))
      ) {
        problems.push([
          path(),
          `address ${ip} is outside the pod CIDRs of node "${node.name}" (${node.podCIDRs.join(', ')})`,
        ]);
      }
    });
  });
  return problems;
}
