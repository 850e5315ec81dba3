import * as z from 'zod';
import { fields, showValue, validateDocument } from '../config/index.js';
import { Policy, PolicyError, parseIdPattern, type IdPattern, type PolicyRule } from '../policy/index.js';

/** API group, version and kind of the custom resource (deploy/crds/meshauth.io_mutualauthpolicies.yaml). */
export const MUTUAL_AUTH_POLICY = {
  group: 'meshauth.io',
  version: 'v1alpha1',
  apiVersion: 'meshauth.io/v1alpha1',
  kind: 'MutualAuthPolicy',
  plural: 'mutualauthpolicies',
  crdName: 'mutualauthpolicies.meshauth.io',
} as const;

/**
 * What a MutualAuthPolicy object does as a whole:
 * - enforce: packets of a covered pair pass only after a mutual handshake (the policy file's behaviour);
 * - permissive: handshakes run, packets of an unauthenticated covered pair pass but are counted and signalled;
 * - disabled: the object has no effect.
 */
export type MutualAuthPolicyMode = 'enforce' | 'permissive' | 'disabled';

/** One end of a pair rule as written in the object (exactly one of spiffeId or namespace). */
export interface MutualAuthPolicyPeer {
  spiffeId?: string;
  namespace?: string;
  serviceAccount?: string;
}

export interface MutualAuthPolicyRuleSpec {
  name: string;
  from: MutualAuthPolicyPeer;
  to: MutualAuthPolicyPeer;
  auth?: 'mutual';
  mode?: 'required' | 'disabled';
}

/** A condition in status.conditions (the shape of metav1.Condition). */
export interface PolicyCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  /** RFC 3339 time. */
  lastTransitionTime: string;
  reason: string;
  message: string;
}

/** A MutualAuthPolicy object as the API server returns it. */
export interface MutualAuthPolicyObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; uid?: string; generation?: number; resourceVersion?: string };
  spec?: { mode?: MutualAuthPolicyMode; rules?: MutualAuthPolicyRuleSpec[] };
  status?: { observedGeneration?: number; conditions?: PolicyCondition[] };
}

/** A valid object, converted: its mode and its rules as the project's Policy. */
export interface CompiledPolicyObject {
  name: string;
  uid: string | undefined;
  generation: number | undefined;
  mode: MutualAuthPolicyMode;
  /** The object's rules (names as in the object); label "MutualAuthPolicy <name>". */
  policy: Policy;
}

/**
 * Maps the namespace / service-account shorthand to a SPIFFE ID (pattern). Both arguments may hold
 * "*" (a namespace-only peer passes serviceAccount "*"). Must agree with the workload IDs the
 * inventory derives from pods.
 */
export type ShorthandIdFn = (namespace: string, serviceAccount: string) => string;

export interface PolicyObjectOptions {
  /** Trust domain of the shorthand IDs (the default ShorthandIdFn uses it). */
  trustDomain: string;
  /** Default: spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount> (the SPIRE convention). */
  shorthandId?: ShorthandIdFn;
}

/**
 * A MutualAuthPolicy object that cannot be applied (code MESHAUTH_ERR_POLICY_OBJECT). `problems`
 * has one line per problem: "MutualAuthPolicy <name>: <path>: <reason>". `objectName` is the
 * object's metadata.name ("" when even that is missing).
 */
export class PolicyObjectError extends PolicyError {
  readonly objectName: string;

  constructor(objectName: string, problems: readonly string[], options?: { cause?: unknown }) {
    super(problems, { ...options, code: 'MESHAUTH_ERR_POLICY_OBJECT' });
    this.objectName = objectName;
  }
}

/** The default shorthand: the SPIRE Kubernetes convention spiffe://<td>/ns/<ns>/sa/<sa>. */
export function spireShorthandId(trustDomain: string): ShorthandIdFn {
  return (namespace, serviceAccount) => `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

const DNS_GLOB_RE = /^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$/;
const SA_GLOB_RE = /^[a-z0-9*]([-.a-z0-9*]*[a-z0-9*])?$/;
const RULE_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function peerSchema(shorthand: ShorthandIdFn) {
  const optString = z.string().optional();
  return z
    .unknown()
    .optional()
    .transform((v, ctx): IdPattern => {
      const fail = (message: string): never => {
        ctx.addIssue({ code: 'custom', message });
        return z.NEVER;
      };
      if (v === undefined) return fail('is required');
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        return fail(`must be an object with spiffeId or namespace (got ${showValue(v)})`);
      const p = v as Record<string, unknown>;
      const unknown = Object.keys(p).filter((k) => !['spiffeId', 'namespace', 'serviceAccount'].includes(k));
      if (unknown.length > 0) return fail(`has unknown field(s) ${unknown.join(', ')}`);
      for (const k of ['spiffeId', 'namespace', 'serviceAccount'] as const) {
        if (!optString.safeParse(p[k]).success) return fail(`${k} must be a string (got ${showValue(p[k])})`);
      }
      const { spiffeId, namespace, serviceAccount } = p as MutualAuthPolicyPeer;
      if ((spiffeId === undefined) === (namespace === undefined))
        return fail('set exactly one of spiffeId or namespace');
      if (serviceAccount !== undefined && namespace === undefined)
        return fail('serviceAccount needs namespace');
      let text: string;
      if (spiffeId !== undefined) text = spiffeId;
      else {
        if (!DNS_GLOB_RE.test(namespace!) || namespace!.length > 63)
          return fail(`namespace "${namespace}" is not a namespace name (a-z 0-9 -, "*" as a wildcard)`);
        if (serviceAccount !== undefined && (!SA_GLOB_RE.test(serviceAccount) || serviceAccount.length > 253))
          return fail(
            `serviceAccount "${serviceAccount}" is not a service account name (a-z 0-9 - ., "*" as a wildcard)`,
          );
        text = shorthand(namespace!, serviceAccount ?? '*');
      }
      const parsed = parseIdPattern(text);
      if (typeof parsed === 'string')
        return fail(spiffeId !== undefined ? `spiffeId ${parsed}` : `gives "${text}", which ${parsed}`);
      return parsed;
    });
}

function objectSchema(shorthand: ShorthandIdFn) {
  const peer = peerSchema(shorthand);
  return z.object({
    spec: z.strictObject({
      mode: fields.enumField(['enforce', 'permissive', 'disabled'] as const, 'enforce'),
      rules: z.array(
        z.strictObject({
          name: fields.stringField().refine((n) => RULE_NAME_RE.test(n) && n.length <= 63, {
            message: 'must be a DNS label (a-z 0-9 -, at most 63 characters)',
          }),
          from: peer,
          to: peer,
          auth: fields.enumField(['mutual'] as const, 'mutual'),
          mode: fields.enumField(['required', 'disabled'] as const, 'required'),
        }),
      ),
    }),
  });
}

/**
 * Converts a MutualAuthPolicy object (as listed or watched from the API server) into its mode and
 * the project's Policy rules. All or nothing: any invalid rule makes the whole object invalid.
 *
 * @throws PolicyObjectError listing every problem (path relative to the object, e.g.
 *   "spec.rules[0].from") when the object is not a valid MutualAuthPolicy.
 */
export function policyFromObject(obj: unknown, opts: PolicyObjectOptions): CompiledPolicyObject {
  const meta = typeof obj === 'object' && obj !== null ? (obj as MutualAuthPolicyObject).metadata : undefined;
  const name = typeof meta?.name === 'string' ? meta.name : '';
  const label = `${MUTUAL_AUTH_POLICY.kind} ${name || '(unnamed)'}`;
  const problems: string[] = [];
  if (!name) problems.push(`${label}: metadata.name: is required`);
  const o = obj as MutualAuthPolicyObject | undefined;
  if (o?.kind !== undefined && o.kind !== MUTUAL_AUTH_POLICY.kind)
    problems.push(`${label}: kind: must be ${MUTUAL_AUTH_POLICY.kind} (got ${showValue(o.kind)})`);
  if (o?.apiVersion !== undefined && o.apiVersion !== MUTUAL_AUTH_POLICY.apiVersion)
    problems.push(
      `${label}: apiVersion: must be ${MUTUAL_AUTH_POLICY.apiVersion} (got ${showValue(o.apiVersion)})`,
    );
  const shorthand = opts.shorthandId ?? spireShorthandId(opts.trustDomain);
  let parsed: z.output<ReturnType<typeof objectSchema>> | undefined;
  try {
    parsed = validateDocument(objectSchema(shorthand), obj, () => label, 'MESHAUTH_ERR_POLICY_OBJECT');
  } catch (err) {
    const lines = (err as { problems?: readonly string[] }).problems;
    if (!lines) throw err;
    problems.push(...lines);
  }
  // Duplicate names are checked on the raw rules, so they are reported along with other problems.
  const rawRules = (o?.spec as { rules?: unknown } | undefined)?.rules;
  if (Array.isArray(rawRules)) {
    const seen = new Map<unknown, number>();
    rawRules.forEach((r: unknown, i) => {
      const n = typeof r === 'object' && r !== null ? (r as { name?: unknown }).name : undefined;
      if (typeof n !== 'string') return;
      const dup = seen.get(n);
      if (dup !== undefined)
        problems.push(`${label}: spec.rules[${i}].name: duplicate rule name "${n}" (also rules[${dup}])`);
      else seen.set(n, i);
    });
  }
  if (problems.length > 0 || !parsed) throw new PolicyObjectError(name, problems);
  const rules: PolicyRule[] = parsed.spec.rules.map((r) => ({ ...r }));
  return {
    name,
    uid: typeof meta?.uid === 'string' ? meta.uid : undefined,
    generation: typeof meta?.generation === 'number' ? meta.generation : undefined,
    mode: parsed.spec.mode,
    policy: new Policy(rules, label),
  };
}

/** The policies in effect from a set of valid objects, one Policy per mode that has effect. */
export interface CombinedPolicies {
  /** Rules of objects in enforce mode; rule names "<object>/<rule>". */
  enforce: Policy;
  /** Rules of objects in permissive mode; rule names "<object>/<rule>". */
  permissive: Policy;
}

/**
 * Combines valid objects into one Policy per mode (disabled objects are left out). A pair covered
 * by both an enforce and a permissive rule is the caller's to resolve (enforce should win).
 */
export function combinePolicyObjects(objects: readonly CompiledPolicyObject[]): CombinedPolicies {
  const byMode = (mode: MutualAuthPolicyMode): PolicyRule[] =>
    [...objects]
      .filter((o) => o.mode === mode)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .flatMap((o) => o.policy.rules.map((r) => ({ ...r, name: `${o.name}/${r.name}` })));
  return {
    enforce: new Policy(byMode('enforce'), `${MUTUAL_AUTH_POLICY.kind} objects (enforce)`),
    permissive: new Policy(byMode('permissive'), `${MUTUAL_AUTH_POLICY.kind} objects (permissive)`),
  };
}

/**
 * The status condition "Valid" for an object, per the Kubernetes API conventions: True with
 * reason Accepted, or False with reason InvalidRules and the problems as the message (at most
 * 32 KiB). `previous` keeps lastTransitionTime when the status does not change.
 */
export function validCondition(
  result: { generation?: number | undefined; error?: PolicyObjectError },
  now: Date,
  previous?: readonly PolicyCondition[],
): PolicyCondition {
  const status = result.error ? 'False' : 'True';
  const before = previous?.find((c) => c.type === 'Valid');
  const message = result.error
    ? result.error.problems.join('\n').slice(0, 32_768)
    : 'all rules are valid and applied';
  return {
    type: 'Valid',
    status,
    ...(result.generation !== undefined ? { observedGeneration: result.generation } : {}),
    lastTransitionTime:
      before && before.status === status
        ? before.lastTransitionTime
        : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    reason: result.error ? 'InvalidRules' : 'Accepted',
    message,
  };
}
