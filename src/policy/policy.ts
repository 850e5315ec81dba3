import type { PolicyMode } from '../datapath/index.js';
import type { PolicyRule, RuleMode } from './types.js';

/** The datapath mode of an enabled rule mode ("required" rules are enforced). */
function datapathMode(m: RuleMode): PolicyMode | undefined {
  return m === 'required' ? 'enforce' : m === 'permissive' ? 'permissive' : undefined;
}

/** The stronger of two modes: enforce wins over permissive. */
function stronger(a: PolicyMode | undefined, b: PolicyMode | undefined): PolicyMode | undefined {
  return a === 'enforce' || b === 'enforce' ? 'enforce' : (a ?? b);
}

/** A set of rules saying which identity pairs need mutual authentication, and how strictly. */
export class Policy {
  readonly rules: readonly PolicyRule[];
  /** Where the rules came from, for messages. */
  readonly label: string;

  constructor(rules: readonly PolicyRule[], label = 'policy') {
    this.rules = Object.freeze([...rules]);
    this.label = label;
  }

  /**
   * The rule that decides the pair: the first enabled rule covering it in either direction,
   * "required" rules before "permissive" ones. Undefined when none covers it.
   */
  matchingRule(a: string, b: string): PolicyRule | undefined {
    const covers = (r: PolicyRule): boolean =>
      (r.from.matches(a) && r.to.matches(b)) || (r.from.matches(b) && r.to.matches(a));
    return (
      this.rules.find((r) => r.mode === 'required' && covers(r)) ??
      this.rules.find((r) => r.mode === 'permissive' && covers(r))
    );
  }

  /**
   * How the datapath treats the pair when it is not authenticated: "enforce" (drop), "permissive"
   * (pass, counted and signalled) or undefined (no rule: pass).
   */
  pairMode(a: string, b: string): PolicyMode | undefined {
    const r = this.matchingRule(a, b);
    return r ? datapathMode(r.mode) : undefined;
  }

  /** Whether traffic between these two identities is to be authenticated (enforced or permissive). */
  requires(localSpiffeId: string, remoteSpiffeId: string): boolean {
    return this.matchingRule(localSpiffeId, remoteSpiffeId) !== undefined;
  }

  /**
   * Whether `spiffeId` needs authentication with every peer, known or not (a rule whose other
   * side is "*"). The datapath expresses this with the POLICY_ANY_REMOTE wildcard.
   */
  requiresWithAnyone(spiffeId: string): PolicyRule | undefined {
    const anyone = (r: PolicyRule): boolean =>
      (r.from.matches(spiffeId) && r.to.kind === 'any') || (r.to.matches(spiffeId) && r.from.kind === 'any');
    return (
      this.rules.find((r) => r.mode === 'required' && anyone(r)) ??
      this.rules.find((r) => r.mode === 'permissive' && anyone(r))
    );
  }

  /**
   * The strongest mode of the enabled rules that name `spiffeId` on either side, whatever the
   * other side: what applies to its traffic with a pod address whose identity is not known yet.
   */
  modeWithUnknownPeers(spiffeId: string): PolicyMode | undefined {
    let mode: PolicyMode | undefined;
    for (const r of this.rules) {
      if (r.from.matches(spiffeId) || r.to.matches(spiffeId)) mode = stronger(mode, datapathMode(r.mode));
    }
    return mode;
  }
}

/** Functional form of Policy.requires. */
export function policyRequires(policy: Policy, localSpiffeId: string, remoteSpiffeId: string): boolean {
  return policy.requires(localSpiffeId, remoteSpiffeId);
}
