import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { publishNodeKey, type NodeAnnotator } from '../../../src/kubernetes/node-key.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { flushPromises } from './fake-informer.js';

const KEY = Buffer.alloc(32, 3).toString('base64');

class FakeNodes implements NodeAnnotator {
  annotations: Record<string, Record<string, string>> = { 'node-a': {}, 'node-b': {} };
  patches: Array<[string, Record<string, string | null>]> = [];
  failNext = 0;
  async nodeAnnotations(name: string): Promise<Record<string, string>> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('connect ECONNREFUSED');
    }
    return { ...this.annotations[name] };
  }
  async annotateNode(name: string, a: Record<string, string | null>): Promise<void> {
    this.patches.push([name, a]);
    for (const [k, v] of Object.entries(a)) if (v !== null) this.annotations[name]![k] = v;
  }
}

describe('publishNodeKey', () => {
  it('patches only its own node, only what differs, and retries with back-off', async () => {
    const api = new FakeNodes();
    api.failNext = 2;
    const clock = new FakeClock(1_000_000);
    const pub = publishNodeKey({
      api,
      nodeName: 'node-a',
      publicKey: KEY,
      wireguardPort: 51820,
      logger: pino({ level: 'silent' }),
      clock,
      retryMs: 100,
    });
    await flushPromises();
    expect(api.patches).toEqual([]);
    clock.advance(100); // second attempt fails too
    await flushPromises();
    clock.advance(199);
    await flushPromises();
    expect(api.patches).toEqual([]);
    clock.advance(1);
    await pub.published;
    expect(api.patches).toEqual([
      ['node-a', { 'meshauth.io/wireguard-public-key': KEY, 'meshauth.io/wireguard-port': '51820' }],
    ]);
    expect(api.annotations['node-b']).toEqual({});
    // already published: nothing to write
    const again = publishNodeKey({
      api,
      nodeName: 'node-a',
      publicKey: KEY,
      logger: pino({ level: 'silent' }),
      clock,
    });
    await again.published;
    expect(api.patches).toHaveLength(1);
    pub.close();
    again.close();
  });
});
