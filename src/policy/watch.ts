import { followFile, reloadErrorFields, type ReloadOutcome, type ReloadResult } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Clock } from '../time.js';
import { loadPolicyFile } from './load.js';
import { diffRules, policyDigest } from './diff.js';
import type { Policy } from './policy.js';

export interface PolicyWatcher {
  /**
   * Re-reads the file now. On success `policy.current` is replaced (and `onChange` runs); on
   * failure the current policy stays and the error is logged and returned.
   */
  reload(): ReloadResult;
  /** The policy in use was acted on since (a later resync succeeded): see FileFollower.acted. */
  acted(): void;
  /** Stops watching. Idempotent. */
  close(): void;
}

export interface WatchPolicyFileOptions {
  log: Logger;
  /**
   * Called after `policy.current` was replaced by a different policy (or, after a failed attempt,
   * to act on the same policy again). Throws when acting on the policy failed: the reload is then
   * reported as taken but failed (`applied: true`).
   */
  onChange: () => void;
  /** Quiet time after the last change before the file is read (default 200 ms). */
  debounceMs?: number;
  clock?: Clock;
  /**
   * Told the outcome of every reload (metrics), and `undefined` when only `failing` changed;
   * `failing` is true while the file is refused or its content was taken but not acted on.
   */
  observe?: (outcome: ReloadOutcome | undefined, failing: boolean) => void;
}

/**
 * Keeps `policy.current` in step with the policy file `file`. A new file is read and validated as
 * at start (loadPolicyFile); a good one replaces the policy (`policy_reloaded`, with the rule
 * count and how many rules were added, removed and changed by name: diffRules), a bad one — YAML syntax, schema, unreadable, deleted, empty — is logged
 * (`policy_reload_failed`, with the file and reason) and ignored: the last good policy stays
 * enforced, never "no policy", and watching goes on so a fixed file is taken; a file with the
 * rules in use (the same policyDigest: fixed back, or only reordered) is not taken again and, after
 * a refused file, logs `policy_reloaded` with `unchanged: true`. When the new policy was taken but `onChange` (the
 * daemon's map resync) threw, `policy_reload_failed` with `applied: true` and the reason says so
 * and the outcome is `failed`; the next reload of the same rules runs `onChange` again.
 */
export function watchPolicyFile(
  policy: { current: Policy },
  file: string,
  opts: WatchPolicyFileOptions,
): PolicyWatcher {
  const log = opts.log;
  return followFile(file, {
    read: loadPolicyFile,
    apply(next, { previousFailed, notActed }): ReloadOutcome {
      // Rule order does not change enforcement: a reordered file is the policy in use (policyDigest).
      const same = policyDigest(next) === policyDigest(policy.current);
      if (same && !notActed) {
        if (previousFailed) {
          log.info(
            { event: 'policy_reloaded', file, unchanged: true, rules: next.rules.length },
            'policy file is valid again (same rules as the policy in use)',
          );
        }
        return 'unchanged';
      }
      const { added, removed, changed } = diffRules(policy.current, next);
      const diff = { added: added.length, removed: removed.length, changed: changed.length };
      if (!same) policy.current = next;
      try {
        opts.onChange();
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        log.error(
          { event: 'policy_reload_failed', file, applied: true, ...reloadErrorFields(error) },
          'policy file taken, but acting on it failed: the node maps may not match it',
        );
        return 'failed';
      }
      if (same) {
        log.info(
          { event: 'policy_reloaded', file, unchanged: true, retried: true, rules: next.rules.length },
          'policy in use acted on again (the last attempt failed): the node maps match it now',
        );
      } else {
        log.info({ event: 'policy_reloaded', file, rules: next.rules.length, ...diff }, 'policy reloaded');
      }
      return 'applied';
    },
    rejected(error) {
      log.error(
        { event: 'policy_reload_failed', file, ...reloadErrorFields(error) },
        'policy reload failed; keeping the previous policy',
      );
    },
    ...(opts.observe ? { observe: opts.observe } : {}),
    debounceMs: opts.debounceMs,
    clock: opts.clock,
  });
}
