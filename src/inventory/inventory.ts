import { cidrContains, normalizeIp, parseCidr, type Cidr } from '../config/index.js';
import { checkInventory } from './check.js';
import { InventoryError } from './errors.js';
import type { InventoryData, InventoryNode, InventoryWorkload } from './types.js';

export interface InventoryChange {
  previous: InventoryData;
  current: InventoryData;
}

interface Indexes {
  data: InventoryData;
  nodesByName: Map<string, InventoryNode>;
  nodesByAddress: Map<string, InventoryNode>;
  podCidrs: Array<{ cidr: Cidr; node: InventoryNode }>;
  workloadsByNode: Map<string, InventoryWorkload[]>;
  workloadsByIp: Map<string, InventoryWorkload>;
  idsByNode: Map<string, Set<string>>;
}

/** Objects frozenCopy made (deeply frozen, so they can be shared instead of copied again). */
const frozenCopies = new WeakSet<object>();

/**
 * A deeply frozen copy of plain inventory data (objects, arrays, strings, numbers), sharing the
 * parts that already are such copies: a source that rebuilds the content on every change (the
 * Kubernetes informers) passes its unchanged workloads through at no cost, where a full
 * structuredClone + freeze per change dominated a 10,000-pod rebuild.
 */
export function frozenCopy<T>(v: T): T {
  if (typeof v !== 'object' || v === null || frozenCopies.has(v)) return v;
  const copy = Array.isArray(v)
    ? v.map((x: unknown) => frozenCopy(x))
    : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, frozenCopy(x)]));
  Object.freeze(copy);
  frozenCopies.add(copy);
  return copy as T;
}

function index(data: InventoryData): Indexes {
  const ix: Indexes = {
    data,
    nodesByName: new Map(),
    nodesByAddress: new Map(),
    podCidrs: [],
    workloadsByNode: new Map(),
    workloadsByIp: new Map(),
    idsByNode: new Map(),
  };
  for (const n of data.nodes) {
    ix.nodesByName.set(n.name, n);
    ix.nodesByAddress.set(n.address, n);
    for (const c of n.podCIDRs) ix.podCidrs.push({ cidr: parseCidr(c) as Cidr, node: n });
    ix.workloadsByNode.set(n.name, []);
    ix.idsByNode.set(n.name, new Set());
  }
  // Longest prefix first, so nodeForPodAddress picks the most specific range.
  ix.podCidrs.sort((a, b) => b.cidr.prefix - a.cidr.prefix);
  for (const w of data.workloads) {
    ix.workloadsByNode.get(w.node)?.push(w);
    ix.idsByNode.get(w.node)?.add(w.spiffeId);
    for (const ip of w.ips) ix.workloadsByIp.set(ip, w);
  }
  return ix;
}

/**
 * Nodes and workloads, with the lookups the daemon and the handshake need. The content can be
 * replaced as a whole (file reload); listeners hear about every replacement. Lookups accept any
 * textual form of an address (IPv4-mapped IPv6 included).
 */
export class Inventory {
  /** Where the content came from ("inventory /etc/meshauth/inventory.yaml"), for messages. */
  readonly label: string;
  private ix: Indexes;
  private readonly listeners = new Set<(change: InventoryChange) => void>();

  /** Validates cross-references; throws InventoryError. `data` is frozen and kept. */
  constructor(data: InventoryData, label = 'inventory') {
    this.label = label;
    this.ix = index(Inventory.validated(data, label));
  }

  private static validated(data: InventoryData, label: string): InventoryData {
    const problems = checkInventory(data);
    if (problems.length > 0) throw new InventoryError(problems.map(([p, r]) => `${label}: ${p}: ${r}`));
    return frozenCopy(data);
  }

  /** Current content (frozen). */
  get data(): InventoryData {
    return this.ix.data;
  }

  node(name: string): InventoryNode | undefined {
    return this.ix.nodesByName.get(name);
  }

  nodes(): readonly InventoryNode[] {
    return this.ix.data.nodes;
  }

  /** The node whose daemon has this address (the source of an incoming handshake). */
  nodeForAddress(ip: string): InventoryNode | undefined {
    const n = normalizeIp(ip);
    return n === undefined ? undefined : this.ix.nodesByAddress.get(n);
  }

  /** The node whose pod CIDRs contain this address. */
  nodeForPodAddress(ip: string): InventoryNode | undefined {
    return this.ix.podCidrs.find((c) => cidrContains(c.cidr, ip))?.node;
  }

  workloads(): readonly InventoryWorkload[] {
    return this.ix.data.workloads;
  }

  workloadsOnNode(node: string): readonly InventoryWorkload[] {
    return this.ix.workloadsByNode.get(node) ?? [];
  }

  workloadByIp(ip: string): InventoryWorkload | undefined {
    const n = normalizeIp(ip);
    return n === undefined ? undefined : this.ix.workloadsByIp.get(n);
  }

  workloadsWithSpiffeId(spiffeId: string): InventoryWorkload[] {
    return this.ix.data.workloads.filter((w) => w.spiffeId === spiffeId);
  }

  /** Whether some workload with this SPIFFE ID runs on `node`. */
  isWorkloadOnNode(spiffeId: string, node: string): boolean {
    return this.ix.idsByNode.get(node)?.has(spiffeId) ?? false;
  }

  /** Distinct SPIFFE IDs of the workloads on `node`, sorted (what the identity source must fetch). */
  spiffeIdsOnNode(node: string): string[] {
    return [...(this.ix.idsByNode.get(node) ?? [])].sort();
  }

  /**
   * Replaces the content after validating it (throws InventoryError and keeps the old one), then
   * tells every listener. A listener that throws does not stop the others; the content stays
   * replaced and the error is thrown after all ran (an AggregateError when several threw), so the
   * caller learns that acting on the new content failed.
   */
  replace(data: InventoryData): void {
    const next = index(Inventory.validated(data, this.label));
    const previous = this.ix.data;
    this.ix = next;
    const errors: unknown[] = [];
    for (const l of [...this.listeners]) {
      try {
        l({ previous, current: next.data });
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) {
      const text = errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ');
      throw new AggregateError(errors, `${errors.length} inventory listeners failed: ${text}`);
    }
  }

  /** Listens for replacements; a listener throws when acting on the change failed. Returns the unsubscribe function. */
  onChange(listener: (change: InventoryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
