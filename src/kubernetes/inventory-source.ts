import type { Logger } from '../log.js';
import { frozenCopy, Inventory, type InventoryNode } from '../inventory/index.js';
import { systemClock, type Clock } from '../time.js';
import { EventBatch } from './batch.js';
import { KeptInformer, type ResourceInformer, type WatchStatus } from './informer.js';
import { buildInventory, type PodEntry } from './inventory-builder.js';
import { nodeToInventoryNode, type NodeConversion } from './node.js';
import { objectKey, type NodeObject, type PodObject } from './objects.js';
import { BAD_POD_REASONS, podToWorkload, type PodConversion } from './pod.js';

/** Counters the source reports to (Prometheus in the daemon, plain objects in tests). */
export interface InventorySourceObserver {
  /** An object (or a field of it) was left out; `bad` when the object itself is malformed. */
  skipped?(kind: 'pod' | 'node', reason: string, bad: boolean): void;
  /** The inventory was rebuilt from `events` informer events in `ms` milliseconds. */
  applied?(events: number, ms: number): void;
}

export interface KubernetesInventorySourceOptions {
  pods: ResourceInformer<PodObject>;
  nodes: ResourceInformer<NodeObject>;
  conversion: PodConversion & NodeConversion;
  logger: Logger;
  observer?: InventorySourceObserver;
  /** Default systemClock. */
  clock?: Clock;
  /** Events arriving within this window are applied together. Default 5 ms. */
  batchMs?: number;
  /** First informer restart delay after an error. Default 500 ms. */
  retryMs?: number;
  maxRetryMs?: number;
}

/**
 * Inventory from the Kubernetes API: Pods of all namespaces become workloads, Nodes become
 * inventory nodes (see pod.ts, node.ts, inventory-builder.ts). Informer events are coalesced for
 * `batchMs` and applied as one Inventory.replace(), which the daemon turns into entry-by-entry map
 * writes. Losing the API server never removes anything: the informers are restarted and their
 * differences applied when they are back. Bad objects are left out with a reason (log + observer).
 */
export class KubernetesInventorySource {
  private readonly pods = new Map<string, PodEntry>();
  private readonly nodes = new Map<string, InventoryNode>();
  private readonly podInformer: KeptInformer<PodObject>;
  private readonly nodeInformer: KeptInformer<NodeObject>;
  private readonly log: Logger;
  private readonly batch: EventBatch;
  private inv: Inventory | undefined;
  private pending = 0;
  private closed = false;
  /** Counter behind PodEntry.claimedAt: bumped each time a pod is seen taking a new address. */
  private claims = 0;
  /** Current exclusions by "kind/key" (reported once per change, not on every rebuild). */
  private excluded = new Map<string, string>();

  constructor(private readonly opts: KubernetesInventorySourceOptions) {
    const clock = opts.clock ?? systemClock;
    this.log = opts.logger;
    this.batch = new EventBatch(clock, opts.batchMs ?? 5, () => this.flushNow());
    const keep = (resource: string) => ({
      resource,
      clock,
      ...(opts.retryMs !== undefined ? { retryMs: opts.retryMs } : {}),
      ...(opts.maxRetryMs !== undefined ? { maxRetryMs: opts.maxRetryMs } : {}),
      onError: (err: unknown, attempt: number, retryInMs: number) =>
        this.log.warn(
          {
            event: 'kubernetes_watch_failed',
            resource,
            attempt,
            retry_in_ms: retryInMs,
            reason: err instanceof Error ? err.message : String(err),
          },
          `watch of ${resource} failed; enforcement continues on the last known state, retrying`,
        ),
      onSynced: (first: boolean) =>
        this.log.info(
          { event: 'kubernetes_synced', resource, first },
          first ? `${resource} listed` : `${resource} watch resumed`,
        ),
    });
    this.podInformer = new KeptInformer(opts.pods, keep('pods'));
    this.nodeInformer = new KeptInformer(opts.nodes, keep('nodes'));
    const onPod = (pod: PodObject) => this.setPod(pod);
    opts.pods.on('add', onPod);
    opts.pods.on('update', onPod);
    opts.pods.on('delete', (pod) => this.deletePod(pod));
    const onNode = (n: NodeObject) => this.setNode(n);
    opts.nodes.on('add', onNode);
    opts.nodes.on('update', onNode);
    opts.nodes.on('delete', (n) => this.deleteNode(n));
  }

  /**
   * Starts both informers and resolves with the inventory once both have listed (the first full
   * sync). Later changes replace the inventory's content in place.
   */
  async start(): Promise<Inventory> {
    this.nodeInformer.start();
    this.podInformer.start();
    await Promise.all([this.nodeInformer.synced, this.podInformer.synced]);
    this.flushNow();
    return this.inventory;
  }

  /** The inventory (after start() resolved). */
  get inventory(): Inventory {
    if (!this.inv) throw new Error('kubernetes inventory: not synced yet');
    return this.inv;
  }

  /** Whether both resources completed their first list. */
  get synced(): boolean {
    return this.inv !== undefined;
  }

  status(): WatchStatus[] {
    return [this.podInformer.status(), this.nodeInformer.status()];
  }

  /** Objects currently left out, "kind/key" -> reason. */
  exclusions(): ReadonlyMap<string, string> {
    return this.excluded;
  }

  private setPod(pod: PodObject): void {
    const key = objectKey(pod);
    const r = podToWorkload(pod, this.opts.conversion);
    this.excluded.delete(`pod/${key}`);
    if (r.ok) {
      // A status update that keeps the pod's addresses keeps its claim order: only taking an
      // address it did not have makes it the latest claimant of that address.
      const prev = this.pods.get(key);
      const claimedAt =
        prev && r.workload.ips.every((ip) => prev.workload.ips.includes(ip)) ? prev.claimedAt : ++this.claims;
      // Frozen once here, so that each rebuild's Inventory.replace shares it instead of copying it.
      this.pods.set(key, { workload: frozenCopy(r.workload), createdAtMs: r.createdAtMs, claimedAt });
    } else {
      // Not a workload (any more): finished, terminating, no IP yet, or malformed.
      this.pods.delete(key);
      if (BAD_POD_REASONS.has(r.reason)) this.exclude('pod', key, r.reason, r.detail ?? '', true);
    }
    this.podInformer.touched();
    this.changed();
  }

  private deletePod(pod: PodObject): void {
    this.pods.delete(objectKey(pod));
    this.excluded.delete(`pod/${objectKey(pod)}`);
    this.podInformer.touched();
    this.changed();
  }

  private setNode(obj: NodeObject): void {
    const name = obj.metadata?.name ?? '';
    const r = nodeToInventoryNode(obj, this.opts.conversion);
    this.forgetNode(name);
    if (r.ok) {
      this.nodes.set(name, frozenCopy(r.node));
      for (const p of r.problems) this.exclude('node', `${name}:${p.field}`, p.field, p.reason, true);
    } else {
      // Fail closed for this node only: its pods leave the inventory (their addresses become
      // unresolved in its pod CIDRs) until it is valid again; other nodes are unaffected.
      this.nodes.delete(name);
      this.exclude('node', name, r.reason, r.detail ?? '', true);
    }
    this.nodeInformer.touched();
    this.changed();
  }

  private forgetNode(name: string): void {
    for (const id of [...this.excluded.keys()])
      if (id === `node/${name}` || id.startsWith(`node/${name}:`)) this.excluded.delete(id);
  }

  private deleteNode(obj: NodeObject): void {
    this.nodes.delete(obj.metadata?.name ?? '');
    this.forgetNode(obj.metadata?.name ?? '');
    this.nodeInformer.touched();
    this.changed();
  }

  private exclude(kind: 'pod' | 'node', key: string, reason: string, detail: string, bad: boolean): void {
    const id = `${kind}/${key}`;
    if (this.excluded.get(id) === reason) return;
    this.excluded.set(id, reason);
    this.opts.observer?.skipped?.(kind, reason, bad);
    this.log.warn(
      { event: 'kubernetes_object_skipped', kind, object: key, reason, detail },
      `${kind} ${key} left out of the inventory: ${reason}${detail ? ` (${detail})` : ''}`,
    );
  }

  private changed(): void {
    this.pending++;
    if (this.closed || !this.inv) return;
    this.batch.schedule();
  }

  /** Applies everything received so far (tests call it to settle; the batch timer calls it too). */
  flushNow(): void {
    if (this.closed) return;
    this.batch.cancel();
    const t0 = performance.now();
    const events = this.pending;
    this.pending = 0;
    const { data, excluded } = buildInventory(this.nodes.values(), this.pods.values());
    const seen = new Set<string>();
    for (const e of excluded) {
      seen.add(`${e.kind}/${e.key}`);
      this.exclude(e.kind, e.key, e.reason, e.detail, false);
    }
    // Forget conflicts that are resolved (malformed objects are forgotten when they change).
    for (const [id, reason] of this.excluded) {
      if (!seen.has(id) && isConflictReason(reason)) this.excluded.delete(id);
    }
    const before = this.inv?.data;
    try {
      if (!this.inv) this.inv = new Inventory(data, 'kubernetes inventory');
      else this.inv.replace(data);
    } catch (err) {
      // Taken, but a listener failed to act on it and reported it (the daemon's resync logs
      // state_resync_failed); the next change tries again.
      if (this.inv && this.inv.data !== before) {
        this.opts.observer?.applied?.(events, performance.now() - t0);
        return;
      }
      // buildInventory resolves every conflict the checks know; reaching this is a bug. Keep the
      // last good inventory (enforcement continues) and say why.
      this.log.error(
        { event: 'kubernetes_inventory_rejected', err },
        'inventory from the API server rejected; keeping the previous one',
      );
      return;
    }
    this.opts.observer?.applied?.(events, performance.now() - t0);
  }

  /** Stops the informers. The inventory keeps its last content. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.batch.cancel();
    await Promise.all([this.podInformer.close(), this.nodeInformer.close()]);
  }
}

function isConflictReason(reason: string): boolean {
  return [
    'duplicate-address',
    'overlapping-pod-cidr',
    'unknown-node',
    'node-address',
    'outside-pod-cidr',
    'address-reused',
  ].includes(reason);
}
