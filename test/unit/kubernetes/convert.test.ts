import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SPIFFE_ID_TEMPLATE,
  podToWorkload,
  spiffeIdTemplateProblem,
} from '../../../src/kubernetes/pod.js';
import { nodeToInventoryNode } from '../../../src/kubernetes/node.js';
import { buildInventory } from '../../../src/kubernetes/inventory-builder.js';
import type { PodObject } from '../../../src/kubernetes/objects.js';

const conv = { trustDomain: 'cluster.local', spiffeIdTemplate: DEFAULT_SPIFFE_ID_TEMPLATE };
const KEY = Buffer.alloc(32, 7).toString('base64');

function pod(over: Partial<PodObject> & { ips?: string[] } = {}): PodObject {
  return {
    metadata: { name: 'web-1', namespace: 'demo', uid: 'u-1', creationTimestamp: '2026-11-30T10:00:00Z' },
    spec: { nodeName: 'node-a', serviceAccountName: 'web' },
    status: { phase: 'Running', podIPs: (over.ips ?? ['10.1.0.5', 'fd00:1::5']).map((ip) => ({ ip })) },
    ...over,
  };
}

describe('podToWorkload', () => {
  it('maps a running pod: SPIRE-convention SPIFFE ID, both address families, node, selectors', () => {
    expect(podToWorkload(pod(), conv)).toEqual({
      ok: true,
      uid: 'u-1',
      createdAtMs: Date.parse('2026-11-30T10:00:00Z'),
      workload: {
        name: 'demo/web-1',
        spiffeId: 'spiffe://cluster.local/ns/demo/sa/web',
        node: 'node-a',
        ips: ['10.1.0.5', 'fd00:1::5'],
        selectors: ['k8s:ns:demo', 'k8s:sa:web', 'k8s:pod-uid:u-1'],
      },
    });
  });

  it('falls back to status.podIP and the default service account; applies a custom template', () => {
    const r = podToWorkload(
      { ...pod(), spec: { nodeName: 'node-a' }, status: { phase: 'Running', podIP: '10.1.0.9' } },
      { trustDomain: 'td', spiffeIdTemplate: 'spiffe://{trustDomain}/k8s/{nodeName}/{namespace}/{podName}' },
    );
    expect(r).toMatchObject({
      ok: true,
      workload: { spiffeId: 'spiffe://td/k8s/node-a/demo/web-1', ips: ['10.1.0.9'] },
    });
    expect(r.ok && r.workload.selectors).toContain('k8s:sa:default');
  });

  it('skips pods that are not workloads, with a reason', () => {
    expect(podToWorkload({ ...pod(), spec: { nodeName: 'a', hostNetwork: true } }, conv)).toMatchObject({
      ok: false,
      reason: 'host-network',
    });
    expect(
      podToWorkload({ ...pod(), metadata: { name: 'x', deletionTimestamp: '2026-11-30T10:00:00Z' } }, conv),
    ).toMatchObject({ ok: false, reason: 'terminating' });
    for (const phase of ['Succeeded', 'Failed'])
      expect(podToWorkload({ ...pod(), status: { phase, podIP: '10.1.0.5' } }, conv)).toMatchObject({
        reason: 'finished',
      });
    expect(podToWorkload({ ...pod(), spec: {} }, conv)).toMatchObject({ reason: 'unscheduled' });
    expect(podToWorkload(pod({ ips: [] }), conv)).toMatchObject({ reason: 'no-ip' });
  });

  it('skips a pod with any malformed address whole, and one whose SPIFFE ID would be invalid', () => {
    for (const bad of ['10.1.0.300', 'not-an-ip', '10.1.0.0/24', ''])
      expect(podToWorkload(pod({ ips: ['10.1.0.5', bad || '::::'] }), conv)).toMatchObject({
        ok: false,
        reason: 'malformed-ip',
      });
    expect(
      podToWorkload(pod(), { trustDomain: 'Bad Domain', spiffeIdTemplate: DEFAULT_SPIFFE_ID_TEMPLATE }),
    ).toMatchObject({ ok: false, reason: 'invalid-spiffe-id' });
  });

  it('skips a pod claiming an address no pod can have (unspecified, loopback, multicast, broadcast)', () => {
    for (const [bad, why] of [
      ['0.0.0.0', 'unspecified'],
      ['::', 'unspecified'],
      ['127.0.0.1', 'loopback'],
      ['::1', 'loopback'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['224.0.0.1', 'multicast'],
      ['ff02::1', 'multicast'],
      ['255.255.255.255', 'broadcast'],
    ])
      expect(podToWorkload(pod({ ips: ['10.1.0.5', bad!] }), conv)).toEqual({
        ok: false,
        reason: 'malformed-ip',
        detail: `${bad}: ${why} address`,
      });
  });

  it('checks templates for unknown placeholders', () => {
    expect(spiffeIdTemplateProblem(DEFAULT_SPIFFE_ID_TEMPLATE)).toBeUndefined();
    expect(spiffeIdTemplateProblem('spiffe://{trustDomain}/{sa}')).toMatch(/unknown placeholder \{sa\}/);
  });
});

describe('nodeToInventoryNode', () => {
  const node = (
    ann: Record<string, string> = {},
    spec: object = { podCIDRs: ['10.1.0.0/24', 'fd00:1::/64'] },
  ) => ({
    metadata: { name: 'node-a', annotations: ann },
    spec,
    status: {
      addresses: [
        { type: 'Hostname', address: 'node-a' },
        { type: 'InternalIP', address: '192.168.0.1' },
        { type: 'ExternalIP', address: '203.0.113.1' },
      ],
    },
  });

  it('takes the configured address type, pod CIDRs and meshauth.io annotations', () => {
    const r = nodeToInventoryNode(
      node({
        'meshauth.io/wireguard-public-key': KEY,
        'meshauth.io/wireguard-port': '51999',
        'meshauth.io/handshake-port': '4444',
      }),
      { addressType: 'InternalIP' },
    );
    expect(r).toEqual({
      ok: true,
      problems: [],
      node: {
        name: 'node-a',
        address: '192.168.0.1',
        podCIDRs: ['10.1.0.0/24', 'fd00:1::/64'],
        wireguardPublicKey: KEY,
        handshakePort: 4444,
        wireguardPort: 51999,
      },
    });
    expect(nodeToInventoryNode(node(), { addressType: 'ExternalIP' })).toMatchObject({
      node: { address: '203.0.113.1' },
    });
  });

  it('uses the pod-cidrs annotation only when the spec has none', () => {
    const ann = { 'meshauth.io/pod-cidrs': '10.9.0.0/24, fd00:9::/64' };
    expect(nodeToInventoryNode(node(ann, {}), { addressType: 'InternalIP' })).toMatchObject({
      node: { podCIDRs: ['10.9.0.0/24', 'fd00:9::/64'] },
    });
    expect(nodeToInventoryNode(node(ann), { addressType: 'InternalIP' })).toMatchObject({
      node: { podCIDRs: ['10.1.0.0/24', 'fd00:1::/64'] },
    });
  });

  it("skips a node whose address cannot be a node's, and survives non-string annotation values", () => {
    for (const bad of ['0.0.0.0', '127.0.0.1', '::', 'ff02::1'])
      expect(
        nodeToInventoryNode(
          { metadata: { name: 'x' }, status: { addresses: [{ type: 'InternalIP', address: bad }] } },
          { addressType: 'InternalIP' },
        ),
      ).toMatchObject({ ok: false, reason: 'malformed-address', detail: expect.stringContaining(bad) });
    const r = nodeToInventoryNode(
      {
        metadata: {
          name: 'x',
          annotations: {
            'meshauth.io/wireguard-public-key': 42,
            'meshauth.io/wireguard-port': 51820,
            'meshauth.io/pod-cidrs': ['10.1.0.0/24'],
          } as unknown as Record<string, string>,
        },
        status: { addresses: [{ type: 'InternalIP', address: '10.0.0.7' }] },
      },
      { addressType: 'InternalIP' },
    );
    expect(r.ok).toBe(true);
    expect(r.ok && r.node).toMatchObject({ address: '10.0.0.7', podCIDRs: [] });
    expect(r.ok && r.node.wireguardPublicKey).toBeUndefined();
    expect(r.ok && r.problems.map((p) => p.field).sort()).toEqual([
      'pod-cidrs',
      'wireguard-port',
      'wireguard-public-key',
    ]);
  });

  it('skips a node without an address; leaves out malformed annotations with a reason', () => {
    expect(
      nodeToInventoryNode(
        { metadata: { name: 'x' }, status: { addresses: [] } },
        { addressType: 'InternalIP' },
      ),
    ).toMatchObject({ ok: false, reason: 'no-address' });
    expect(
      nodeToInventoryNode(
        { metadata: { name: 'x' }, status: { addresses: [{ type: 'InternalIP', address: 'nope' }] } },
        { addressType: 'InternalIP' },
      ),
    ).toMatchObject({ ok: false, reason: 'malformed-address' });
    const r = nodeToInventoryNode(
      node(
        {
          'meshauth.io/wireguard-public-key': 'abc',
          'meshauth.io/wireguard-port': '70000',
          'meshauth.io/pod-cidrs': 'x',
        },
        {},
      ),
      { addressType: 'InternalIP' },
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.node.wireguardPublicKey).toBeUndefined();
    expect(r.node.podCIDRs).toEqual([]);
    expect(r.problems.map((p) => p.field).sort()).toEqual([
      'pod-cidrs',
      'wireguard-port',
      'wireguard-public-key',
    ]);
  });
});

describe('buildInventory', () => {
  const n = (name: string, address: string, podCIDRs: string[]) => ({
    name,
    address,
    podCIDRs,
    wireguardPublicKey: undefined,
    handshakePort: undefined,
  });
  const w = (name: string, node: string, ips: string[], createdAtMs: number, claimedAt = 0) => ({
    createdAtMs,
    claimedAt,
    workload: { name, spiffeId: `spiffe://td/ns/x/sa/${name.split('/')[1]}`, node, ips, selectors: [] },
  });

  it('gives a reused address to the newest pod and drops the old mapping', () => {
    const { data, excluded } = buildInventory(
      [n('a', '192.168.0.1', ['10.1.0.0/24'])],
      [w('x/old', 'a', ['10.1.0.5'], 1), w('x/new', 'a', ['10.1.0.5'], 2)],
    );
    expect(data.workloads.map((x) => x.name)).toEqual(['x/new']);
    expect(excluded).toEqual([{ kind: 'pod', key: 'x/old', reason: 'address-reused', detail: '10.1.0.5' }]);
  });

  it('within the same creation second, gives a reused address to the later claim, not by name', () => {
    // creationTimestamp has whole seconds: "x/a-old" sorts before "x/reuse" but claimed first
    const { data, excluded } = buildInventory(
      [n('a', '192.168.0.1', ['10.1.0.0/24'])],
      [w('x/reuse', 'a', ['10.1.0.5'], 1000, 2), w('x/a-old', 'a', ['10.1.0.5', '10.1.0.6'], 1000, 1)],
    );
    expect(data.workloads.map((x) => [x.name, x.ips])).toEqual([
      ['x/a-old', ['10.1.0.6']],
      ['x/reuse', ['10.1.0.5']],
    ]);
    expect(excluded).toEqual([{ kind: 'pod', key: 'x/a-old', reason: 'address-reused', detail: '10.1.0.5' }]);
    // an older creation second still loses, whatever the claim order
    const older = buildInventory(
      [n('a', '192.168.0.1', ['10.1.0.0/24'])],
      [w('x/new', 'a', ['10.1.0.5'], 2000, 1), w('x/old', 'a', ['10.1.0.5'], 1000, 2)],
    );
    expect(older.data.workloads.map((x) => x.name)).toEqual(['x/new']);
  });

  it('resolves node conflicts and leaves out pods that cannot be placed', () => {
    const { data, excluded } = buildInventory(
      [
        n('a', '192.168.0.1', ['10.1.0.0/24']),
        n('b', '192.168.0.1', ['10.2.0.0/24']),
        n('c', '192.168.0.3', ['10.1.0.0/16', '10.3.0.0/24']),
      ],
      [
        w('x/on-b', 'b', ['10.2.0.5'], 1),
        w('x/outside', 'a', ['10.9.0.5'], 1),
        w('x/node-ip', 'c', ['192.168.0.1'], 1),
        w('x/ok', 'c', ['10.3.0.5'], 1),
      ],
    );
    expect(data.nodes.map((x) => [x.name, x.podCIDRs])).toEqual([
      ['a', ['10.1.0.0/24']],
      ['c', ['10.3.0.0/24']],
    ]);
    expect(data.workloads.map((x) => x.name)).toEqual(['x/ok']);
    expect(excluded.map((e) => `${e.kind}/${e.key}:${e.reason}`).sort()).toEqual([
      'node/b:duplicate-address',
      'node/c:overlapping-pod-cidr',
      'pod/x/node-ip:node-address',
      'pod/x/on-b:unknown-node',
      'pod/x/outside:outside-pod-cidr',
    ]);
  });
});
