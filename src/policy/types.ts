import type { IdPattern } from './pattern.js';

/**
 * "required": enforced (unauthenticated packets dropped); "permissive": authenticated, but
 * unauthenticated packets pass, counted and signalled; "disabled": kept but switched off.
 */
export type RuleMode = 'required' | 'permissive' | 'disabled';

/** One policy rule. A rule covers the pair in both directions (the datapath sees both). */
export interface PolicyRule {
  name: string;
  from: IdPattern;
  to: IdPattern;
  /** Only "mutual" (SPIFFE mTLS between the node daemons) exists today. */
  auth: 'mutual';
  /** "disabled" keeps the rule but switches it off; "permissive" authenticates without dropping. */
  mode: RuleMode;
}
