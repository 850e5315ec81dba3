import type { PolicyRule } from '../policy/index.js';
import { PolicyObjectError, policyFromObject } from './policy-object.js';
import type { PolicyConverter } from './policy-source.js';

/**
 * The PolicyConverter of the daemon: policyFromObject (all or nothing), then the object's mode on
 * each enabled rule: "enforce" -> required, "permissive" -> permissive; a disabled object has no
 * rules. The namespace/service-account shorthand is the pod SPIFFE ID template with "*" for the
 * placeholders a rule cannot name, so policy and inventory agree on IDs.
 */
export function mutualAuthPolicyConverter(trustDomain: string, spiffeIdTemplate: string): PolicyConverter {
  const shorthandId = (namespace: string, serviceAccount: string): string =>
    spiffeIdTemplate.replace(/\{(\w+)\}/g, (all, k: string) =>
      k === 'trustDomain'
        ? trustDomain
        : k === 'namespace'
          ? namespace
          : k === 'serviceAccount'
            ? serviceAccount
            : k === 'podName' || k === 'nodeName'
              ? '*'
              : all,
    );
  return (obj) => {
    try {
      const c = policyFromObject(obj, { trustDomain, shorthandId });
      if (c.mode === 'disabled') return { ok: true, rules: [] };
      const rules: PolicyRule[] = c.policy.rules.map((r) => ({
        ...r,
        mode: r.mode === 'disabled' ? 'disabled' : c.mode === 'permissive' ? 'permissive' : 'required',
      }));
      return { ok: true, rules };
    } catch (err) {
      if (err instanceof PolicyObjectError) return { ok: false, problems: [...err.problems] };
      throw err;
    }
  };
}
