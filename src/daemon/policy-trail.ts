import type { AuditEventInput, AuditSink } from '../audit/index.js';
import { diffRules, policyDigest, type Policy, type RuleModeChange } from '../policy/index.js';

/** Rule names listed per kind of change in one `policy-changed` record, at most. */
export const POLICY_RECORD_MAX_NAMES = 64;
/** Characters of one rule name kept in a `policy-changed` record; a longer name is cut and ends in "…". */
export const POLICY_RECORD_MAX_NAME_CHARS = 256;

export type PolicySourceKind = 'file' | 'kubernetes';

/**
 * Why a `policy-changed` record was written (its `reason`): `daemon-start` (the policy in force
 * when the daemon started), `file-reload` (a changed policy file was taken), `kubernetes-update`
 * (the rules derived from MutualAuthPolicy objects changed).
 */
export type PolicyChangeReason = 'daemon-start' | 'file-reload' | 'kubernetes-update';

/** `name`, or its first POLICY_RECORD_MAX_NAME_CHARS - 1 UTF-16 units and "…" (never half a surrogate pair). */
function cut(name: string): string {
  if (name.length <= POLICY_RECORD_MAX_NAME_CHARS) return name;
  let head = name.slice(0, POLICY_RECORD_MAX_NAME_CHARS - 1);
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  return `${head}…`;
}

/** A bounded list: the first POLICY_RECORD_MAX_NAMES names (sorted) and how many there are. */
function bounded(names: readonly string[]): { count: number; names: string[] } {
  return { count: names.length, names: names.slice(0, POLICY_RECORD_MAX_NAMES).map(cut) };
}

function boundedModes(changes: readonly RuleModeChange[]): { count: number; rules: RuleModeChange[] } {
  return {
    count: changes.length,
    rules: changes.slice(0, POLICY_RECORD_MAX_NAMES).map((c) => ({ ...c, name: cut(c.name) })),
  };
}

/**
 * The `policy-changed` audit record (outcome `info`) for the policy `next` taking over from
 * `previous` (undefined at start: every rule counts as added). Details:
 * - `source`: `file` | `kubernetes`; `file`: the policy file's path (file source only);
 * - `digest`: policyDigest of the rules in force (`sha256:<hex>`, independent of rule order);
 *   `previousDigest`: the one it replaced (absent at start);
 * - `rules`: the number of rules in force; `modes`: how many are `required`, `permissive`,
 *   `disabled`;
 * - `added`, `removed`, `changed`: `{count, names}` by rule name (diffRules), `modeChanged`:
 *   `{count, rules: [{name, from, to}]}`. Each list holds at most POLICY_RECORD_MAX_NAMES entries
 *   (the first by name), each name at most POLICY_RECORD_MAX_NAME_CHARS characters; `count` is
 *   always the full number, so one record stays bounded whatever the size of the policy.
 */
export function policyChangedEvent(
  previous: Policy | undefined,
  next: Policy,
  source: { kind: PolicySourceKind; file?: string },
  reason: PolicyChangeReason,
): AuditEventInput {
  const diff = diffRules(previous, next);
  const modes = { required: 0, permissive: 0, disabled: 0 };
  for (const r of next.rules) modes[r.mode]++;
  return {
    type: 'policy-changed',
    outcome: 'info',
    reason,
    details: {
      source: source.kind,
      ...(source.file !== undefined ? { file: source.file } : {}),
      digest: policyDigest(next),
      ...(previous ? { previousDigest: policyDigest(previous) } : {}),
      rules: next.rules.length,
      modes,
      added: bounded(diff.added),
      removed: bounded(diff.removed),
      changed: bounded(diff.changed),
      modeChanged: boundedModes(diff.modeChanged),
    },
  };
}

/**
 * Records the policy in force in the audit trail: one `policy-changed` event at start, then one
 * each time changed() is told of a policy with another digest than the last one recorded (a
 * listener that fires with the same rules, such as a Kubernetes status write coming back as an
 * update, or a file that only reorders rules, records nothing).
 */
export class PolicyTrail {
  private last: { policy: Policy; digest: string } | undefined;

  constructor(
    private readonly sink: AuditSink,
    private readonly source: { kind: PolicySourceKind; file?: string },
  ) {}

  /** Records the policy in force at start. */
  start(policy: Policy): void {
    this.record(policy, 'daemon-start');
  }

  /** Records `policy` if it differs from the last one recorded; returns whether it did. */
  changed(policy: Policy): boolean {
    if (this.last && policyDigest(policy) === this.last.digest) return false;
    this.record(policy, this.source.kind === 'file' ? 'file-reload' : 'kubernetes-update');
    return true;
  }

  private record(policy: Policy, reason: PolicyChangeReason): void {
    this.sink.record(policyChangedEvent(this.last?.policy, policy, this.source, reason));
    this.last = { policy, digest: policyDigest(policy) };
  }
}
