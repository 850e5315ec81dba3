import {
  KeptInformer,
  nodeToInventoryNode,
  type NodeObject,
  type ResourceInformer,
  type WatchStatus,
} from '../kubernetes/index.js';
import type { Logger } from '../log.js';
import type { Clock } from '../time.js';
import type { RelayNode } from './node-api.js';

export interface KubernetesNodeSourceOptions {
  /** Node informer (KubernetesClient.nodeInformer(); tests may pass an in-memory fake). */
  informer: ResourceInformer<NodeObject>;
  /** TCP port of every node's meshauthd API (the port of api.tcp.listen), 1..65535. */
  apiPort: number;
  /**
   * SPIFFE ID each node's API must present: a spiffe:// ID in which "{node}" is replaced by the
   * Node name, e.g. spiffe://example.org/meshauth/node/{node}. Undefined: any ID of the trust
   * domain is accepted (the relay then only checks the chain).
   */
  nodeIdTemplate?: string;
  /** status.addresses type of the API address. Default "InternalIP" (as the handshake address). */
  addressType?: string;
  clock: Clock;
  logger?: Logger;
}

/** Throws a RangeError for a template that is not spiffe://... with "{node}" in its path. */
export function checkNodeIdTemplate(template: string): void {
  const m = /^spiffe:\/\/[^/]+(\/.*)$/.exec(template);
  if (!m || !m[1]!.includes('{node}'))
    throw new RangeError(
      `node SPIFFE ID template "${template}": must be spiffe://<td>/... with {node} in its path`,
    );
}

/**
 * The relay's node set from Kubernetes: every Node, as the meshauthd API at its InternalIP (the
 * address nodeToInventoryNode gives as the handshake address) and `apiPort`, expecting the SPIFFE
 * ID the template gives. A Node without a usable address is left out (logged once per change).
 * The informer is kept running (KeptInformer: restart with back-off, re-list on 410 Gone), so
 * nodes joining and leaving are picked up and the last known set is kept while the API server is
 * away. `nodes()` is cheap: the relay calls it on every request.
 */
export class KubernetesNodeSource {
  private readonly byName = new Map<string, RelayNode>();
  /** Nodes left out for want of an address (warned about once). */
  private readonly skipped = new Set<string>();
  private readonly kept: KeptInformer<NodeObject>;
  private readonly opts: KubernetesNodeSourceOptions;
  /** Resolves after the first successful list. */
  readonly synced: Promise<void>;

  constructor(opts: KubernetesNodeSourceOptions) {
    if (!(Number.isInteger(opts.apiPort) && opts.apiPort >= 1 && opts.apiPort <= 65535))
      throw new RangeError(`node API port: must be between 1 and 65535 (got ${opts.apiPort})`);
    if (opts.nodeIdTemplate !== undefined) checkNodeIdTemplate(opts.nodeIdTemplate);
    this.opts = opts;
    const log = opts.logger;
    this.kept = new KeptInformer(opts.informer, {
      resource: 'nodes',
      clock: opts.clock,
      onError: (err, attempt, retryInMs) =>
        log?.warn(
          { event: 'relay_nodes_watch_failed', err, attempt, retry_in_ms: retryInMs },
          'watch of nodes failed; keeping the last known node set, retrying',
        ),
      onSynced: (first) =>
        log?.info(
          { event: 'relay_nodes_synced', nodes: this.byName.size },
          first ? 'nodes listed' : 'nodes watch resumed',
        ),
    });
    this.synced = this.kept.synced;
    opts.informer.on('add', (n) => this.apply(n));
    opts.informer.on('update', (n) => this.apply(n));
    opts.informer.on('delete', (n) => {
      const name = n.metadata?.name;
      if (name && this.byName.delete(name))
        log?.info({ event: 'relay_node_removed', node: name }, 'node left');
      this.kept.touched();
    });
  }

  /** Starts the informer; await `synced` for the first list. */
  start(): this {
    this.kept.start();
    return this;
  }

  /** The node set now, sorted by name. */
  nodes(): RelayNode[] {
    return [...this.byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  status(): WatchStatus {
    return this.kept.status();
  }

  private apply(obj: NodeObject): void {
    this.kept.touched();
    const name = obj.metadata?.name;
    if (!name) return;
    const r = nodeToInventoryNode(obj, { addressType: this.opts.addressType ?? 'InternalIP' });
    if (!r.ok) {
      if (this.byName.delete(name) || !this.skipped.has(name))
        this.opts.logger?.warn(
          { event: 'relay_node_skipped', node: name, reason: r.reason, detail: r.detail },
          'node has no usable API address; left out',
        );
      this.skipped.add(name);
      return;
    }
    this.skipped.delete(name);
    const host = r.node.address.includes(':') ? `[${r.node.address}]` : r.node.address;
    const node: RelayNode = {
      name,
      address: `${host}:${this.opts.apiPort}`,
      ...(this.opts.nodeIdTemplate ? { spiffeId: this.opts.nodeIdTemplate.replaceAll('{node}', name) } : {}),
    };
    const before = this.byName.get(name);
    this.byName.set(name, node);
    if (!before)
      this.opts.logger?.info({ event: 'relay_node_added', node: name, address: node.address }, 'node joined');
    else if (before.address !== node.address || before.spiffeId !== node.spiffeId)
      this.opts.logger?.info(
        { event: 'relay_node_changed', node: name, address: node.address },
        'node API address changed',
      );
  }

  /** Stops the informer. Idempotent. */
  close(): Promise<void> {
    return this.kept.close();
  }
}
