import type { PolicyRule } from './types.js';

/** A set of rules saying which identity pairs need mutual authentication. */
export class Policy {
  readonly rules: readonly PolicyRule[];
  /** Where the rules came from, for messages. */
  readonly label: string;

  constructor(rules: readonly PolicyRule[], label = 'policy') {
    this.rules = Object.freeze([...rules]);
    this.label = label;
  }

  /** The first enabled rule covering the pair in either direction, if any. */
  matchingRule(a: string, b: string): PolicyRule | undefined {
    return this.rules.find(
      (r) =>
        r.mode === 'required' &&
        ((r.from.matches(a) && r.to.matches(b)) || (r.from.matches(b) && r.to.matches(a))),
    );
  }

  /** Whether traffic between these two identities needs mutual authentication. */
  requires(localSpiffeId: string, remoteSpiffeId: string): boolean {
    return this.matchingRule(localSpiffeId, remoteSpiffeId) !== undefined;
  }

  /**
   * Whether `spiffeId` needs authentication with every peer, known or not (a rule whose other
   * side is "*"). The datapath expresses this with the POLICY_ANY_REMOTE wildcard.
   */
  requiresWithAnyone(spiffeId: string): PolicyRule | undefined {
    return this.rules.find(
      (r) =>
        r.mode === 'required' &&
        ((r.from.matches(spiffeId) && r.to.kind === 'any') ||
          (r.to.matches(spiffeId) && r.from.kind === 'any')),
    );
  }
}

/** Functional form of Policy.requires. */
export function policyRequires(policy: Policy, localSpiffeId: string, remoteSpiffeId: string): boolean {
  return policy.requires(localSpiffeId, remoteSpiffeId);
}
