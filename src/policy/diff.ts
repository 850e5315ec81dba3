import { hash } from 'node:crypto';
import { canonicalJson } from '../audit/index.js';
import type { Policy } from './policy.js';
import type { PolicyRule, RuleMode } from './types.js';

/** One rule as the plain values enforcement depends on (patterns by their source text). */
function ruleValue(r: PolicyRule): { name: string; from: string; to: string; auth: string; mode: RuleMode } {
  return { name: r.name, from: r.from.text, to: r.to.text, auth: r.auth, mode: r.mode };
}

/** One rule's enforced content (without its name) as comparable text. */
function ruleKey(r: PolicyRule): string {
  return JSON.stringify([r.from.text, r.to.text, r.auth, r.mode]);
}

/**
 * The identity of a policy as enforced: `sha256:<64 hex>`, SHA-256 over the canonical JSON
 * (src/audit/canonical.ts: keys sorted) of the array of its rules, each `{name, from, to, auth,
 * mode}` with patterns by their source text, the array sorted by that canonical text. Rule order
 * is left out on purpose: it does not change what is enforced (Policy.matchingRule takes
 * "required" rules before "permissive" ones and every rule of one mode yields the same datapath
 * mode), so a file whose rules were only reordered has the same digest.
 */
export function policyDigest(policy: Policy): string {
  const rules = policy.rules
    .map((r) => ({ text: canonicalJson(ruleValue(r)), value: ruleValue(r) }))
    .sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0))
    .map((r) => r.value);
  return `sha256:${hash('sha256', canonicalJson(rules), 'hex')}`;
}

/** A rule whose mode differs between two policies. */
export interface RuleModeChange {
  name: string;
  from: RuleMode;
  to: RuleMode;
}

/** How the rules of one policy differ from another's, by rule name; every list sorted by name. */
export interface RuleDiff {
  /** Names only in the new policy. */
  added: string[];
  /** Names only in the old policy. */
  removed: string[];
  /** Names in both whose from, to, auth or mode differ. */
  changed: string[];
  /** The subset of `changed` whose mode differs, with the old and new mode. */
  modeChanged: RuleModeChange[];
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Rules of `next` against `previous` (undefined: no policy before, every rule is added), matched
 * by name: `added` (new name), `removed` (name gone), `changed` (same name, another
 * from/to/auth/mode; a mode change is also listed in `modeChanged`). Rule names are unique within
 * a policy (the file schema and the MutualAuthPolicy source make sure of it).
 */
export function diffRules(previous: Policy | undefined, next: Policy): RuleDiff {
  const before = new Map((previous?.rules ?? []).map((r) => [r.name, r]));
  const after = new Map(next.rules.map((r) => [r.name, r]));
  const added: string[] = [];
  const changed: string[] = [];
  const modeChanged: RuleModeChange[] = [];
  for (const [name, r] of after) {
    const old = before.get(name);
    if (old === undefined) added.push(name);
    else if (ruleKey(old) !== ruleKey(r)) {
      changed.push(name);
      if (old.mode !== r.mode) modeChanged.push({ name, from: old.mode, to: r.mode });
    }
  }
  const removed = [...before.keys()].filter((name) => !after.has(name));
  return {
    added: added.sort(byName),
    removed: removed.sort(byName),
    changed: changed.sort(byName),
    modeChanged: modeChanged.sort((a, b) => byName(a.name, b.name)),
  };
}
