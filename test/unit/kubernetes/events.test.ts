import type { CoreV1Event } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { EventRecorder, type EventApi } from '../../../src/kubernetes/events.js';
import { FakeClock } from '../../helpers/fake-clock.js';

/** In-memory core/v1 Events of one API server. */
class FakeEvents implements EventApi {
  readonly events = new Map<string, CoreV1Event>();
  creates = 0;
  patches = 0;
  async create(namespace: string, event: CoreV1Event): Promise<string> {
    this.creates++;
    const name = `${event.metadata?.generateName ?? ''}${this.creates}`;
    this.events.set(`${namespace}/${name}`, { ...event, metadata: { ...event.metadata, name, namespace } });
    return Promise.resolve(name);
  }
  async patch(namespace: string, name: string, p: { count: number; lastTimestamp: Date }): Promise<void> {
    this.patches++;
    const e = this.events.get(`${namespace}/${name}`);
    if (!e) throw Object.assign(new Error('not found'), { code: 404 });
    Object.assign(e, p);
    return Promise.resolve();
  }
}

const policy = { apiVersion: 'meshauth.io/v1alpha1', kind: 'MutualAuthPolicy', name: 'shop', uid: 'u1' };

describe('EventRecorder', () => {
  const setup = () => {
    const api = new FakeEvents();
    const clock = new FakeClock(Date.parse('2026-01-01T00:00:00Z'));
    const rec = new EventRecorder({ api, component: 'meshauth.io/meshauthd', instance: 'node-a', clock });
    return { api, clock, rec };
  };

  it('names its reporter and writes an Event of a cluster-scoped object to default', async () => {
    const { api, rec } = setup();
    await rec.record(policy, 'Warning', 'InvalidRules', 'Validate', 'rule r: bad pattern');
    expect([...api.events.values()]).toEqual([
      expect.objectContaining({
        metadata: expect.objectContaining({ namespace: 'default', generateName: 'shop.' }),
        involvedObject: policy,
        type: 'Warning',
        reason: 'InvalidRules',
        action: 'Validate',
        message: 'rule r: bad pattern',
        reportingComponent: 'meshauth.io/meshauthd',
        reportingInstance: 'node-a',
        source: { component: 'meshauth.io/meshauthd', host: 'node-a' },
        count: 1,
      }),
    ]);
  });

  it('aggregates identical Events (count, lastTimestamp), concurrent ones too, and keeps distinct ones apart', async () => {
    const { api, clock, rec } = setup();
    await rec.record(policy, 'Warning', 'InvalidRules', 'Validate', 'm1');
    clock.advance(60_000);
    await Promise.all([
      rec.record({ ...policy }, 'Warning', 'InvalidRules', 'Validate', 'm1'),
      rec.record({ ...policy }, 'Warning', 'InvalidRules', 'Validate', 'm1'),
    ]);
    expect(api.creates).toBe(1);
    const [e] = [...api.events.values()];
    expect(e).toMatchObject({ count: 3, lastTimestamp: new Date(clock.now()) });
    expect(e!.firstTimestamp).toEqual(new Date(clock.now() - 60_000));
    await rec.record(policy, 'Warning', 'InvalidRules', 'Validate', 'm2'); // another message
    await rec.record({ ...policy, uid: 'u2' }, 'Warning', 'InvalidRules', 'Validate', 'm1'); // recreated object
    expect(api.creates).toBe(3);
  });

  it('creates the Event anew when the aggregated one is gone, and passes other errors on', async () => {
    const { api, rec } = setup();
    await rec.record(policy, 'Warning', 'InvalidRules', 'Validate', 'm');
    api.events.clear(); // expired
    await rec.record(policy, 'Warning', 'InvalidRules', 'Validate', 'm');
    expect(api.creates).toBe(2);
    expect([...api.events.values()][0]).toMatchObject({ count: 1 });
    api.patch = () => Promise.reject(Object.assign(new Error('forbidden'), { code: 403 }));
    await expect(rec.record(policy, 'Warning', 'InvalidRules', 'Validate', 'm')).rejects.toThrow(/forbidden/);
    expect(api.creates).toBe(2);
  });

  it('keeps messages to 1 KiB', async () => {
    const { api, rec } = setup();
    await rec.record(policy, 'Warning', 'InvalidRules', 'Validate', 'x'.repeat(5000));
    expect([...api.events.values()][0]!.message).toHaveLength(1024);
  });
});
