export { Policy, policyRequires } from './policy.js';
export { PolicyError } from './errors.js';
export { loadPolicyFile, parsePolicy, parsePolicyDocument } from './load.js';
export { diffRules, policyDigest, type RuleDiff, type RuleModeChange } from './diff.js';
export { watchPolicyFile, type PolicyWatcher, type WatchPolicyFileOptions } from './watch.js';
export { parseIdPattern, type IdPattern } from './pattern.js';
export type { PolicyRule, RuleMode } from './types.js';
export {
  compileNodeState,
  preauthPairs,
  type CompileNodeStateInput,
  type HandleAllocator,
  type NodeState,
  type PolicyEntry,
} from './compile.js';
