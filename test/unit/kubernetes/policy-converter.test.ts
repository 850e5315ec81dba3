import { describe, expect, it } from 'vitest';
import { mutualAuthPolicyConverter } from '../../../src/kubernetes/index.js';

const obj = (mode: string, rules: unknown[]) => ({
  apiVersion: 'meshauth.io/v1alpha1',
  kind: 'MutualAuthPolicy',
  metadata: { name: 'p', generation: 1 },
  spec: { mode, rules },
});
const rule = {
  name: 'web-db',
  from: { namespace: 'demo', serviceAccount: 'web' },
  to: { spiffeId: 'spiffe://td/ns/demo/sa/db' },
};

describe('mutualAuthPolicyConverter', () => {
  const convert = mutualAuthPolicyConverter(
    'td',
    'spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}',
  );

  it('carries the object mode onto its enabled rules; a disabled object has none', () => {
    const e = convert(obj('enforce', [rule]));
    expect(e.ok && e.rules.map((r) => [r.from.text, r.to.text, r.mode])).toEqual([
      ['spiffe://td/ns/demo/sa/web', 'spiffe://td/ns/demo/sa/db', 'required'],
    ]);
    const p = convert(obj('permissive', [rule, { ...rule, name: 'off', mode: 'disabled' }]));
    expect(p.ok && p.rules.map((r) => r.mode)).toEqual(['permissive', 'disabled']);
    expect(convert(obj('disabled', [rule]))).toEqual({ ok: true, rules: [] });
  });

  it('rejects an object with any invalid rule, listing the problems', () => {
    const r = convert(obj('enforce', [rule, { ...rule, name: 'bad', to: { spiffeId: 'not-an-id' } }]));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problems.join('\n')).toMatch(/spec\.rules\[1\]\.to/);
  });

  it('expands the shorthand with the pod template, "*" for what a rule cannot name', () => {
    const c = mutualAuthPolicyConverter(
      'td',
      'spiffe://{trustDomain}/k8s/{namespace}/{serviceAccount}/{podName}',
    );
    const r = c(obj('enforce', [rule]));
    expect(r.ok && r.rules[0]?.from.text).toBe('spiffe://td/k8s/demo/web/*');
  });
});
