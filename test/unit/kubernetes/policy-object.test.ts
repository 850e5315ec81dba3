import { describe, expect, it } from 'vitest';
import {
  PolicyObjectError,
  combinePolicyObjects,
  policyFromObject,
  validCondition,
  type MutualAuthPolicyObject,
} from '../../../src/kubernetes/index.js';
import { PolicyError } from '../../../src/policy/index.js';

const TD = 'cluster.local';
const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

function obj(spec: unknown, name = 'p1', extra: Record<string, unknown> = {}): MutualAuthPolicyObject {
  return {
    apiVersion: 'meshauth.io/v1alpha1',
    kind: 'MutualAuthPolicy',
    metadata: { name, uid: 'u-1', generation: 3 },
    spec,
    ...extra,
  } as MutualAuthPolicyObject;
}

function problemsOf(o: unknown): string[] {
  try {
    policyFromObject(o, { trustDomain: TD });
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyObjectError);
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyObjectError).code).toBe('MESHAUTH_ERR_POLICY_OBJECT');
    return [...(err as PolicyObjectError).problems];
  }
  throw new Error('expected PolicyObjectError');
}

describe('policyFromObject', () => {
  it('converts SPIFFE IDs, patterns and the namespace/service-account shorthand', () => {
    const c = policyFromObject(
      obj({
        rules: [
          {
            name: 'web-api',
            from: { namespace: 'shop', serviceAccount: 'web' },
            to: { spiffeId: id('shop', 'api') },
          },
          { name: 'ns-internal', from: { namespace: 'pay' }, to: { namespace: 'pay' } },
          { name: 'glob', from: { spiffeId: 'spiffe://cluster.local/ns/ops/*' }, to: { spiffeId: '*' } },
          { name: 'off', from: { namespace: 'x' }, to: { namespace: 'y' }, mode: 'disabled' },
        ],
      }),
      { trustDomain: TD },
    );
    expect(c).toMatchObject({ name: 'p1', uid: 'u-1', generation: 3, mode: 'enforce' });
    expect(c.policy.label).toBe('MutualAuthPolicy p1');
    expect(c.policy.rules.map((r) => [r.name, r.from.text, r.to.text, r.auth, r.mode])).toEqual([
      ['web-api', id('shop', 'web'), id('shop', 'api'), 'mutual', 'required'],
      ['ns-internal', id('pay', '*'), id('pay', '*'), 'mutual', 'required'],
      ['glob', 'spiffe://cluster.local/ns/ops/*', '*', 'mutual', 'required'],
      ['off', id('x', '*'), id('y', '*'), 'mutual', 'disabled'],
    ]);
    const p = c.policy;
    expect(p.requires(id('shop', 'api'), id('shop', 'web'))).toBe(true); // both directions
    expect(p.requires(id('shop', 'web'), id('shop', 'db'))).toBe(false);
    expect(p.requires(id('pay', 'a'), id('pay', 'b'))).toBe(true);
    expect(p.requires(id('pay', 'a'), id('payroll', 'b'))).toBe(false); // namespace is a whole segment
    expect(p.requiresWithAnyone(id('ops', 'x'))?.name).toBe('glob');
    expect(p.requires(id('x', 'a'), id('y', 'b'))).toBe(false); // disabled rule
  });

  it('takes the object mode, defaulting to enforce', () => {
    const rules = [{ name: 'r', from: { namespace: 'a' }, to: { namespace: 'b' } }];
    expect(policyFromObject(obj({ rules }), { trustDomain: TD }).mode).toBe('enforce');
    expect(policyFromObject(obj({ rules, mode: 'permissive' }), { trustDomain: TD }).mode).toBe('permissive');
    expect(policyFromObject(obj({ rules, mode: 'disabled' }), { trustDomain: TD }).mode).toBe('disabled');
  });

  it('uses a custom shorthand mapping and serviceAccount globs', () => {
    const c = policyFromObject(
      obj({
        rules: [{ name: 'r', from: { namespace: 'a', serviceAccount: 'web-*' }, to: { namespace: 'b*' } }],
      }),
      { trustDomain: TD, shorthandId: (ns, sa) => `spiffe://example.org/k8s/${ns}/${sa}` },
    );
    expect(c.policy.rules[0]!.from.text).toBe('spiffe://example.org/k8s/a/web-*');
    expect(c.policy.requires('spiffe://example.org/k8s/a/web-1', 'spiffe://example.org/k8s/b2/z')).toBe(true);
    expect(c.policy.requires('spiffe://example.org/k8s/a/api', 'spiffe://example.org/k8s/b2/z')).toBe(false);
  });

  it('rejects the whole object and names every invalid rule', () => {
    const problems = problemsOf(
      obj({
        mode: 'audit',
        rules: [
          { name: 'ok', from: { namespace: 'a' }, to: { namespace: 'b' } },
          { name: 'both', from: { namespace: 'a', spiffeId: id('a', 'b') }, to: { namespace: 'b' } },
          { name: 'sa-alone', from: { serviceAccount: 'web' }, to: { namespace: 'b' } },
          { name: 'bad-id', from: { spiffeId: 'spiffe://Bad_TD/x' }, to: { spiffeId: 'spiffe://td/a/../b' } },
          { name: 'ok', from: { namespace: 'A_B' }, to: { namespace: 'b' }, auth: 'none' },
          { name: 'Bad Name', from: { namespace: 'a' } },
        ],
      }),
    );
    const text = problems.join('\n');
    expect(problems.every((l) => l.startsWith('MutualAuthPolicy p1: '))).toBe(true);
    expect(text).toMatch(/spec\.mode: must be one of "enforce", "permissive", "disabled" \(got "audit"\)/);
    expect(text).toMatch(/spec\.rules\[1\]\.from: set exactly one of spiffeId or namespace/);
    expect(text).toMatch(
      /spec\.rules\[2\]\.from: (set exactly one of spiffeId or namespace|serviceAccount needs namespace)/,
    );
    expect(text).toMatch(/spec\.rules\[3\]\.from: spiffeId .*trust domain/);
    expect(text).toMatch(/spec\.rules\[3\]\.to: spiffeId .*dot segment/);
    expect(text).toMatch(/spec\.rules\[4\]\.from: namespace "A_B" is not a namespace name/);
    expect(text).toMatch(/spec\.rules\[4\]\.auth: must be one of "mutual"/);
    expect(text).toMatch(/spec\.rules\[4\]\.name: duplicate rule name "ok" \(also rules\[0\]\)/);
    expect(text).toMatch(/spec\.rules\[5\]\.name: must be a DNS label/);
    expect(text).toMatch(/spec\.rules\[5\]\.to: is required/);
  });

  it('rejects malformed objects with a clear problem instead of throwing anything else', () => {
    expect(problemsOf(undefined).join('\n')).toMatch(/metadata\.name: is required/);
    expect(problemsOf(null).join('\n')).toMatch(/metadata\.name: is required/);
    expect(problemsOf(obj(undefined)).join('\n')).toMatch(/spec/);
    expect(problemsOf(obj({ rules: 'x' })).join('\n')).toMatch(/spec\.rules/);
    expect(problemsOf(obj({ rules: [], extra: 1 })).join('\n')).toMatch(/extra/);
    expect(problemsOf(obj({ rules: [{ name: 'r', from: 'spiffe://a/b', to: {} }] })).join('\n')).toMatch(
      /spec\.rules\[0\]\.from: must be an object/,
    );
    expect(
      problemsOf(obj({ rules: [{ name: 'r', from: { spiffeId: 7 }, to: { namespace: 'a', x: 1 } }] })),
    ).toEqual([
      'MutualAuthPolicy p1: spec.rules[0].from: spiffeId must be a string (got 7)',
      'MutualAuthPolicy p1: spec.rules[0].to: has unknown field(s) x',
    ]);
    expect(problemsOf({ ...obj({ rules: [] }), kind: 'Pod' }).join('\n')).toMatch(
      /kind: must be MutualAuthPolicy/,
    );
    expect(problemsOf(obj({ rules: [] }, '')).join('\n')).toMatch(
      /MutualAuthPolicy \(unnamed\): metadata\.name/,
    );
  });

  it('a shorthand that maps to an invalid ID is reported, not applied', () => {
    const o = obj({ rules: [{ name: 'r', from: { namespace: 'a' }, to: { spiffeId: '*' } }] });
    let err: unknown;
    try {
      policyFromObject(o, { trustDomain: 'Not A Domain' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyObjectError);
    expect((err as PolicyObjectError).objectName).toBe('p1');
    expect((err as PolicyObjectError).problems).toEqual([
      expect.stringMatching(
        /^MutualAuthPolicy p1: spec\.rules\[0\]\.from: gives "spiffe:\/\/Not A Domain\/ns\/a\/sa\/\*", which /,
      ),
    ]);
  });
});

describe('combinePolicyObjects', () => {
  it('groups rules by object mode, prefixes rule names, leaves disabled objects out', () => {
    const rules = (ns: string) => [{ name: 'r', from: { namespace: ns }, to: { spiffeId: '*' } }];
    const objs = [
      policyFromObject(obj({ rules: rules('b') }, 'beta'), { trustDomain: TD }),
      policyFromObject(obj({ rules: rules('a'), mode: 'permissive' }, 'alpha'), { trustDomain: TD }),
      policyFromObject(obj({ rules: rules('c'), mode: 'disabled' }, 'gamma'), { trustDomain: TD }),
      policyFromObject(obj({ rules: rules('d') }, 'aaa'), { trustDomain: TD }),
    ];
    const c = combinePolicyObjects(objs);
    expect(c.enforce.rules.map((r) => r.name)).toEqual(['aaa/r', 'beta/r']);
    expect(c.permissive.rules.map((r) => r.name)).toEqual(['alpha/r']);
    expect(c.enforce.requiresWithAnyone(id('b', 'x'))).toBeDefined();
    expect(c.enforce.requiresWithAnyone(id('c', 'x'))).toBeUndefined();
    expect(c.permissive.requiresWithAnyone(id('a', 'x'))).toBeDefined();
  });
});

describe('validCondition', () => {
  const now = new Date('2026-01-02T03:04:05.678Z');
  it('says Accepted or InvalidRules with the problems, keeping the transition time while unchanged', () => {
    const ok = validCondition({ generation: 4 }, now);
    expect(ok).toEqual({
      type: 'Valid',
      status: 'True',
      observedGeneration: 4,
      lastTransitionTime: '2026-01-02T03:04:05Z',
      reason: 'Accepted',
      message: 'all rules are valid and applied',
    });
    const later = new Date('2026-01-02T04:00:00Z');
    expect(validCondition({ generation: 5 }, later, [ok]).lastTransitionTime).toBe('2026-01-02T03:04:05Z');
    const error = new PolicyObjectError('p', ['MutualAuthPolicy p: spec.mode: bad', 'second']);
    const bad = validCondition({ generation: 6, error }, later, [ok]);
    expect(bad).toMatchObject({
      status: 'False',
      reason: 'InvalidRules',
      observedGeneration: 6,
      lastTransitionTime: '2026-01-02T04:00:00Z',
      message: 'MutualAuthPolicy p: spec.mode: bad\nsecond',
    });
  });
});
