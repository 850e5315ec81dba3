import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { KubernetesInventorySource } from '../../../src/kubernetes/inventory-source.js';
import type { NodeObject, PodObject } from '../../../src/kubernetes/objects.js';
import { DEFAULT_SPIFFE_ID_TEMPLATE } from '../../../src/kubernetes/pod.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeInformer, flushPromises } from './fake-informer.js';

const node = (name: string, ip: string, cidr: string): NodeObject => ({
  metadata: { name },
  spec: { podCIDRs: [cidr] },
  status: { addresses: [{ type: 'InternalIP', address: ip }] },
});
const pod = (
  name: string,
  nodeName: string,
  ip: string,
  sa = 'web',
  created = '2026-11-30T10:00:00Z',
): PodObject => ({
  metadata: { name, namespace: 'demo', uid: `uid-${name}`, creationTimestamp: created },
  spec: { nodeName, serviceAccountName: sa },
  status: { phase: 'Running', podIPs: [{ ip }] },
});

function setup(logger = pino({ level: 'silent' })) {
  const pods = new FakeInformer<PodObject>();
  const nodes = new FakeInformer<NodeObject>();
  const clock = new FakeClock(1_000_000);
  const skipped: string[] = [];
  const src = new KubernetesInventorySource({
    pods,
    nodes,
    conversion: {
      trustDomain: 'td',
      spiffeIdTemplate: DEFAULT_SPIFFE_ID_TEMPLATE,
      addressType: 'InternalIP',
    },
    logger,
    observer: { skipped: (kind, reason) => skipped.push(`${kind}:${reason}`) },
    clock,
    batchMs: 5,
    retryMs: 100,
    maxRetryMs: 400,
  });
  return { pods, nodes, clock, src, skipped };
}

describe('KubernetesInventorySource', () => {
  it('resolves after both informers listed, with the listed content', async () => {
    const { pods, nodes, src } = setup();
    pods.hold = true;
    const started = src.start();
    nodes.emit('add', node('node-a', '192.168.0.1', '10.1.0.0/24'));
    pods.emit('add', pod('web-1', 'node-a', '10.1.0.5'));
    await flushPromises();
    expect(src.synced).toBe(false);
    pods.release();
    const inv = await started;
    expect(inv.workloadByIp('10.1.0.5')?.spiffeId).toBe('spiffe://td/ns/demo/sa/web');
    expect(inv.node('node-a')?.address).toBe('192.168.0.1');
    expect(src.status().map((s) => s.state)).toEqual(['synced', 'synced']);
  });

  it('applies events in batches; a reused IP moves to the new pod in one replacement', async () => {
    const { pods, nodes, clock, src } = setup();
    nodes.emit('add', node('node-a', '192.168.0.1', '10.1.0.0/24'));
    pods.emit('add', pod('old', 'node-a', '10.1.0.5', 'old'));
    const inv = await src.start();
    const changes: Array<string | undefined> = [];
    inv.onChange(() => changes.push(inv.workloadByIp('10.1.0.5')?.spiffeId));
    // the new pod is reported before the old one's deletion
    pods.emit('add', pod('new', 'node-a', '10.1.0.5', 'new', '2026-11-30T11:00:00Z'));
    pods.emit('add', pod('other', 'node-a', '10.1.0.6'));
    expect(changes).toEqual([]);
    clock.advance(5);
    expect(changes).toEqual(['spiffe://td/ns/demo/sa/new']);
    pods.emit('delete', pod('old', 'node-a', '10.1.0.5', 'old'));
    clock.advance(5);
    expect(changes).toEqual(['spiffe://td/ns/demo/sa/new', 'spiffe://td/ns/demo/sa/new']);
    expect(inv.workloads().map((w) => w.name)).toEqual(['demo/new', 'demo/other']);
    // a pod that finishes leaves
    pods.emit('update', { ...pod('other', 'node-a', '10.1.0.6'), status: { phase: 'Succeeded' } });
    clock.advance(5);
    expect(inv.workloadByIp('10.1.0.6')).toBeUndefined();
  });

  it('moves a reused IP to the pod seen taking it when both were created in the same second', async () => {
    const { pods, nodes, clock, src } = setup();
    nodes.emit('add', node('node-a', '192.168.0.1', '10.1.0.0/24'));
    // same creationTimestamp (whole seconds); the old pod's name sorts first
    pods.emit('add', pod('api-1', 'node-a', '10.1.0.5', 'api'));
    const inv = await src.start();
    expect(inv.workloadByIp('10.1.0.5')?.name).toBe('demo/api-1');
    pods.emit('add', { ...pod('reuse', 'node-a', '10.1.0.5', 'other'), status: { phase: 'Pending' } });
    pods.emit('update', pod('reuse', 'node-a', '10.1.0.5', 'other'));
    clock.advance(5);
    expect(inv.workloadByIp('10.1.0.5')).toMatchObject({
      name: 'demo/reuse',
      spiffeId: 'spiffe://td/ns/demo/sa/other',
    });
    expect(src.exclusions().get('pod/demo/api-1')).toBe('address-reused');
    // a later status write of the old pod with the same address does not take it back
    pods.emit('update', {
      ...pod('api-1', 'node-a', '10.1.0.5', 'api'),
      status: { phase: 'Running', podIP: '10.1.0.5' },
    });
    clock.advance(5);
    expect(inv.workloadByIp('10.1.0.5')?.name).toBe('demo/reuse');
    // once the old pod is gone, its exclusion is forgotten
    pods.emit('delete', pod('api-1', 'node-a', '10.1.0.5', 'api'));
    clock.advance(5);
    expect(inv.workloadByIp('10.1.0.5')?.name).toBe('demo/reuse');
    expect(src.exclusions().has('pod/demo/api-1')).toBe(false);
  });

  it('keeps the inventory while the API server is away, restarts with back-off and applies the difference', async () => {
    const { pods, nodes, clock, src } = setup();
    nodes.emit('add', node('node-a', '192.168.0.1', '10.1.0.0/24'));
    pods.emit('add', pod('web-1', 'node-a', '10.1.0.5'));
    const inv = await src.start();
    expect(pods.starts).toBe(1);

    pods.nextStart = 'error';
    pods.emit('error', new Error('socket hang up'));
    expect(src.status()[0]).toMatchObject({ resource: 'pods', state: 'disconnected', errors: 1 });
    expect(inv.workloadByIp('10.1.0.5')).toBeDefined();
    clock.advance(100); // first restart: fails again
    await flushPromises();
    expect(pods.starts).toBe(2);
    expect(src.status()[0]?.state).toBe('disconnected');
    clock.advance(199);
    await flushPromises();
    expect(pods.starts).toBe(2);
    pods.nextStart = 'ok';
    clock.advance(1); // second restart after 200 ms: succeeds
    await flushPromises();
    expect(pods.starts).toBe(3);
    expect(src.status()[0]).toMatchObject({ state: 'synced', lastSyncAtMs: clock.now(), errors: 2 });
    // the re-list reports what changed meanwhile
    pods.emit('add', pod('web-2', 'node-a', '10.1.0.7'));
    clock.advance(5);
    expect(inv.workloadByIp('10.1.0.7')?.name).toBe('demo/web-2');
    expect(inv.workloadByIp('10.1.0.5')?.name).toBe('demo/web-1');
  });

  it('skips bad objects with a reason and keeps everything else', async () => {
    const { pods, nodes, clock, src, skipped } = setup();
    nodes.emit('add', node('node-a', '192.168.0.1', '10.1.0.0/24'));
    nodes.emit('add', { metadata: { name: 'node-b' }, status: { addresses: [] } });
    nodes.emit('add', {
      ...node('node-c', '192.168.0.3', '10.3.0.0/24'),
      metadata: { name: 'node-c', annotations: { 'meshauth.io/wireguard-public-key': 'not-a-key' } },
    });
    pods.emit('add', pod('good', 'node-a', '10.1.0.5'));
    pods.emit('add', pod('bad-ip', 'node-a', '10.1.0.999'));
    pods.emit('add', pod('on-b', 'node-b', '10.2.0.5'));
    const inv = await src.start();
    expect(inv.workloads().map((w) => w.name)).toEqual(['demo/good']);
    expect(inv.nodes().map((n) => n.name)).toEqual(['node-a', 'node-c']);
    expect(inv.node('node-c')?.wireguardPublicKey).toBeUndefined();
    expect(skipped.sort()).toEqual([
      'node:no-address',
      'node:wireguard-public-key',
      'pod:malformed-ip',
      'pod:unknown-node',
    ]);
    expect(src.exclusions().get('pod/demo/bad-ip')).toBe('malformed-ip');
    // fixed: it joins, and the exclusion is forgotten
    pods.emit('update', pod('bad-ip', 'node-a', '10.1.0.9'));
    clock.advance(5);
    expect(inv.workloadByIp('10.1.0.9')?.name).toBe('demo/bad-ip');
    expect(src.exclusions().has('pod/demo/bad-ip')).toBe(false);
  });

  it('keeps new content a listener failed to act on, without calling it rejected', async () => {
    const logged: Array<{ event?: string }> = [];
    const { pods, nodes, clock, src } = setup(
      pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l)) }),
    );
    nodes.emit('add', node('node-a', '192.168.0.1', '10.1.0.0/24'));
    const inv = await src.start();
    let fail = true;
    inv.onChange(() => {
      if (fail) throw new Error('map write failed');
    });
    pods.emit('add', pod('web-1', 'node-a', '10.1.0.5'));
    clock.advance(5);
    expect(inv.workloadByIp('10.1.0.5')?.name).toBe('demo/web-1');
    expect(logged.map((l) => l.event)).not.toContain('kubernetes_inventory_rejected');
    fail = false;
    pods.emit('add', pod('web-2', 'node-a', '10.1.0.6'));
    clock.advance(5);
    expect(inv.workloadByIp('10.1.0.6')?.name).toBe('demo/web-2');
  });

  it('close() stops both informers and is idempotent', async () => {
    const { pods, nodes, src } = setup();
    await src.start();
    await src.close();
    await src.close();
    expect([pods.stops, nodes.stops]).toEqual([1, 1]);
  });
});
