import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { parseIdPattern, type IdPattern, type PolicyRule } from '../../../src/policy/index.js';
import {
  KubernetesPolicySource,
  type PolicyConverter,
  type PolicyObject,
} from '../../../src/kubernetes/policy-source.js';
import type { PolicyCondition } from '../../../src/kubernetes/policy-object.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeInformer } from './fake-informer.js';

const A = 'spiffe://td/ns/demo/sa/a';
const B = 'spiffe://td/ns/demo/sa/b';
const pat = (t: string) => parseIdPattern(t) as IdPattern;

/** Test converter: spec = { mode, rules: [[from, to]] }; a "bad" from is invalid. */
const convert: PolicyConverter = (o) => {
  const spec = o.spec as { mode: PolicyRule['mode']; rules: Array<[string, string]> };
  const problems = spec.rules.filter(([f]) => f === 'bad').map((_, i) => `rules[${i}].from: invalid`);
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    rules: spec.rules.map(([f, t], i) => ({
      name: `r${i}`,
      from: pat(f),
      to: pat(t),
      auth: 'mutual',
      mode: spec.mode,
    })),
  };
};

const obj = (
  name: string,
  generation: number,
  mode: string,
  rules: Array<[string, string]>,
): PolicyObject => ({
  metadata: { name, namespace: 'demo', generation },
  spec: { mode, rules },
});

function setup() {
  const informer = new FakeInformer<PolicyObject>();
  const clock = new FakeClock(1_000_000);
  const conditions: Array<[string, PolicyCondition]> = [];
  const events: string[] = [];
  const src = new KubernetesPolicySource({
    informer,
    convert,
    reporter: {
      setCondition: async (o, c) => void conditions.push([o.metadata?.name ?? '', c]),
      event: async (o, type, reason) => void events.push(`${o.metadata?.name}:${type}:${reason}`),
    },
    logger: pino({ level: 'silent' }),
    clock,
  });
  return { informer, clock, src, conditions, events };
}

describe('KubernetesPolicySource', () => {
  it('merges valid objects, modes flow through, updates and deletes apply', async () => {
    const { informer, clock, src, conditions } = setup();
    informer.emit('add', obj('p1', 1, 'required', [[A, B]]));
    const p = await src.start();
    expect(p.pairMode(A, B)).toBe('enforce');
    expect(p.rules.map((r) => r.name)).toEqual(['demo/p1/r0']);
    expect(conditions).toEqual([
      ['p1', expect.objectContaining({ type: 'Valid', status: 'True', observedGeneration: 1 })],
    ]);
    const seen: Array<string | undefined> = [];
    src.onChange((q) => seen.push(q.pairMode(A, B)));
    informer.emit('update', obj('p1', 2, 'permissive', [[A, B]]));
    clock.advance(5);
    informer.emit('update', obj('p1', 3, 'disabled', [[A, B]]));
    clock.advance(5);
    informer.emit('update', obj('p1', 4, 'required', [[A, B]]));
    clock.advance(5);
    informer.emit('delete', obj('p1', 4, 'required', [[A, B]]));
    clock.advance(5);
    expect(seen).toEqual(['permissive', undefined, 'enforce', undefined]);
  });

  it('rejects an invalid object whole, keeps its last valid version, reports condition and Event', async () => {
    const { informer, clock, src, conditions, events } = setup();
    informer.emit('add', obj('p1', 1, 'required', [[A, B]]));
    await src.start();
    informer.emit(
      'update',
      obj('p1', 2, 'required', [
        [A, '*'],
        ['bad', B],
      ]),
    );
    clock.advance(5);
    expect(src.policy.requiresWithAnyone(A)).toBeUndefined(); // nothing of generation 2 applied
    expect(src.policy.pairMode(A, B)).toBe('enforce'); // generation 1 stays
    expect(conditions.at(-1)).toEqual([
      'p1',
      expect.objectContaining({ status: 'False', reason: 'InvalidRules', observedGeneration: 2 }),
    ]);
    expect(conditions.at(-1)?.[1].message).toMatch(/generation 1 stays in force/);
    expect(events).toEqual(['p1:Warning:InvalidRules']);
    // a new object that never was valid contributes nothing
    informer.emit('add', obj('p2', 1, 'required', [['bad', A]]));
    clock.advance(5);
    expect(src.policy.rules.map((r) => r.name)).toEqual(['demo/p1/r0']);
  });

  it('does not rewrite a condition the object already carries (status updates come back as events)', async () => {
    const { informer, src, conditions } = setup();
    const o = obj('p1', 1, 'required', [[A, B]]);
    o.status = {
      conditions: [{ type: 'Valid', status: 'True', reason: 'Accepted', message: '', observedGeneration: 1 }],
    };
    informer.emit('add', o);
    await src.start();
    expect(conditions).toEqual([]);
  });
});
