import { describe, expect, it } from 'vitest';
import type { NodeObject } from '../../../src/kubernetes/index.js';
import { checkNodeIdTemplate, KubernetesNodeSource } from '../../../src/relay/index.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeInformer, flushPromises } from '../kubernetes/fake-informer.js';

const node = (name: string, addresses: { type: string; address: string }[]): NodeObject => ({
  metadata: { name },
  status: { addresses },
});

function source(template?: string) {
  const informer = new FakeInformer<NodeObject>();
  const clock = new FakeClock(1_000);
  const s = new KubernetesNodeSource({
    informer,
    apiPort: 4251,
    ...(template ? { nodeIdTemplate: template } : {}),
    clock,
  });
  return { informer, clock, s };
}

describe('KubernetesNodeSource', () => {
  it('maps each Node to its InternalIP and the API port, with the templated SPIFFE ID', async () => {
    const { informer, s } = source('spiffe://td.test/meshauth/node/{node}');
    s.start();
    await s.synced;
    informer.emit('add', node('b', [{ type: 'InternalIP', address: 'fd00::2' }]));
    informer.emit(
      'add',
      node('a', [
        { type: 'ExternalIP', address: '203.0.113.1' },
        { type: 'InternalIP', address: '10.0.0.1' },
      ]),
    );
    expect(s.nodes()).toEqual([
      { name: 'a', address: '10.0.0.1:4251', spiffeId: 'spiffe://td.test/meshauth/node/a' },
      { name: 'b', address: '[fd00::2]:4251', spiffeId: 'spiffe://td.test/meshauth/node/b' },
    ]);
    informer.emit('delete', node('a', []));
    expect(s.nodes().map((n) => n.name)).toEqual(['b']);
    await s.close();
    await s.close();
    expect(informer.stops).toBe(1);
  });

  it('leaves out a Node without a usable address, and drops one that loses it', () => {
    const { informer, s } = source();
    informer.emit('add', node('a', [{ type: 'Hostname', address: 'a' }]));
    informer.emit('add', node('b', [{ type: 'InternalIP', address: 'not-an-ip' }]));
    expect(s.nodes()).toEqual([]);
    informer.emit('update', node('a', [{ type: 'InternalIP', address: '10.0.0.1' }]));
    expect(s.nodes()).toEqual([{ name: 'a', address: '10.0.0.1:4251' }]);
    informer.emit('update', node('a', []));
    expect(s.nodes()).toEqual([]);
  });

  it('keeps the node set while the watch is down and restarts it with back-off', async () => {
    const { informer, clock, s } = source();
    s.start();
    await s.synced;
    informer.emit('add', node('a', [{ type: 'InternalIP', address: '10.0.0.1' }]));
    informer.emit('error', new Error('connection reset'));
    expect(s.status().state).toBe('disconnected');
    expect(s.nodes().map((n) => n.name)).toEqual(['a']);
    clock.advance(500);
    await flushPromises();
    expect(informer.starts).toBe(2);
    expect(s.status().state).toBe('synced');
    await s.close();
  });

  it('refuses a bad port or node ID template', () => {
    const informer = new FakeInformer<NodeObject>();
    const clock = new FakeClock(0);
    expect(() => new KubernetesNodeSource({ informer, apiPort: 0, clock })).toThrow(
      /must be between 1 and 65535 \(got 0\)/,
    );
    expect(() => new KubernetesNodeSource({ informer, apiPort: 70000, clock })).toThrow(
      /must be between 1 and 65535 \(got 70000\)/,
    );
    for (const t of ['spiffe://td.test/meshauth/node', 'https://td.test/{node}', 'spiffe://{node}/x'])
      expect(() => checkNodeIdTemplate(t), t).toThrow(RangeError);
    expect(() => checkNodeIdTemplate('spiffe://td.test/meshauth/node/{node}')).not.toThrow();
  });
});
