import { MemoryAuditSink } from '../../../../src/audit/sink.js';
import { NodeChannels, type NodeChannelsOptions } from '../../../../src/auth/channel/index.js';
import type { Authenticator, ServerAuthenticated } from '../../../../src/auth/manager.js';
import type { Svid, TrustBundles } from '../../../../src/spiffe/index.js';
import type { WireguardKeyAgreement } from '../../../../src/wireguard/keys.js';

export const TD = 'demo.local';
export const nodeId = (n: string): string => `spiffe://${TD}/meshauth/node/${n}`;

/** Workload SVIDs and bundles a test can swap (rotation, revocation). */
export class Identities {
  readonly svids = new Map<string, Svid>();
  constructor(public trust: TrustBundles) {}
  add(svid: Svid): this {
    this.svids.set(svid.spiffeId, svid);
    return this;
  }
  svid(id: string): Svid | undefined {
    return this.svids.get(id);
  }
  bundles(): TrustBundles {
    return this.trust;
  }
}

export interface TestNode {
  name: string;
  channels: NodeChannels;
  port: number;
  identity: Identities;
  written: ServerAuthenticated[];
  audit: MemoryAuditSink;
  /** Workloads the inventory places on the peer node (mutable). */
  peerWorkloads: Set<string>;
  /** Refuse the reverse write with this reason (the write check's verdict). */
  refuseWrite?: string;
}

export interface NodeSpec {
  name: string;
  peer: string;
  nodeSvid: Svid;
  identity: Identities;
  peerWorkloads: string[];
  wireguard?: WireguardKeyAgreement;
  /** The peer's WireGuard key as this node's inventory holds it. */
  peerWireguardKey?: string;
  fallback?: Authenticator;
  overrides?: Partial<NodeChannelsOptions>;
}

/** Two-node registry: each node finds the other's listener through it. */
export class Cluster {
  readonly ports = new Map<string, number>();
  readonly nodes: TestNode[] = [];

  async node(spec: NodeSpec): Promise<TestNode> {
    const audit = new MemoryAuditSink();
    const peerWorkloads = new Set(spec.peerWorkloads);
    const written: ServerAuthenticated[] = [];
    const node: Partial<TestNode> = {
      name: spec.name,
      identity: spec.identity,
      written,
      audit,
      peerWorkloads,
    };
    const channels = new NodeChannels({
      nodeName: spec.name,
      nodeSvid: () => spec.nodeSvid,
      nodeSpiffeId: nodeId,
      identity: spec.identity,
      channelEndpoint: (n) => {
        const port = this.ports.get(n);
        return port === undefined ? undefined : { address: '127.0.0.1', port };
      },
      nodeForAddress: () => spec.peer,
      isWorkloadOnNode: (id, n) => n === spec.peer && peerWorkloads.has(id),
      ...(spec.wireguard ? { wireguard: spec.wireguard } : {}),
      ...(spec.peerWireguardKey !== undefined
        ? { expectedPeerWireguardKey: (n: string) => (n === spec.peer ? spec.peerWireguardKey : undefined) }
        : {}),
      onPairRequested: (r) => {
        if (node.refuseWrite)
          throw Object.assign(new Error(`write refused: ${node.refuseWrite}`), { reason: node.refuseWrite });
        written.push(r);
      },
      ...(spec.fallback ? { fallback: spec.fallback } : {}),
      maxEntryTtlMs: 3_600_000,
      timeoutMs: 3000,
      reconnectBaseMs: 20,
      reconnectMaxMs: 200,
      audit,
      ...spec.overrides,
    });
    const { port } = await channels.listen({ host: '127.0.0.1', port: 0 });
    this.ports.set(spec.name, port);
    Object.assign(node, { channels, port });
    this.nodes.push(node as TestNode);
    return node as TestNode;
  }

  async close(): Promise<void> {
    for (const n of this.nodes.splice(0)) await n.channels.close();
    this.ports.clear();
  }
}

/** Wait until cond() holds (polling), or fail after timeoutMs. */
export async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
