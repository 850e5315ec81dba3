import type { IdPattern } from './pattern.js';

export type RuleMode = 'required' | 'disabled';

/** One policy rule. A rule covers the pair in both directions (the datapath sees both). */
export interface PolicyRule {
  name: string;
  from: IdPattern;
  to: IdPattern;
  /** Only "mutual" (SPIFFE mTLS between the node daemons) exists today. */
  auth: 'mutual';
  /** "disabled" keeps the rule in the file but switches it off. */
  mode: RuleMode;
}
