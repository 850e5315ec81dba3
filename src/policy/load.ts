import { resolve } from 'node:path';
import * as z from 'zod';
import {
  ConfigError,
  fields,
  parseYamlText,
  readYamlFile,
  showValue,
  validateDocument,
} from '../config/index.js';
import { PolicyError } from './errors.js';
import { parseIdPattern, type IdPattern } from './pattern.js';
import { Policy } from './policy.js';
import type { PolicyRule } from './types.js';

const CODE = 'MESHAUTH_ERR_POLICY';

const pattern = () =>
  z
    .unknown()
    .optional()
    .transform((v, ctx): IdPattern => {
      if (v === undefined) {
        ctx.addIssue({ code: 'custom', message: 'is required' });
        return z.NEVER;
      }
      const p = typeof v === 'string' ? parseIdPattern(v) : 'must be a string';
      if (typeof p === 'string') {
        ctx.addIssue({ code: 'custom', message: `${p} (got ${showValue(v)})` });
        return z.NEVER;
      }
      return p;
    });

const policySchema = z
  .strictObject({
    rules: z.array(
      z.strictObject({
        name: fields.stringField(),
        from: pattern(),
        to: pattern(),
        auth: fields.enumField(['mutual'] as const, 'mutual'),
        mode: fields.enumField(['required', 'permissive', 'disabled'] as const, 'required', {
          enforce: '"enforce" is the MutualAuthPolicy word; in the policy file it is "required"',
        }),
      }),
    ),
  })
  .superRefine((doc, ctx) => {
    const seen = new Map<string, number>();
    doc.rules.forEach((r, i) => {
      const dup = seen.get(r.name);
      if (dup !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['rules', i, 'name'],
          message: `duplicate rule name "${r.name}" (also rules[${dup}])`,
        });
      } else seen.set(r.name, i);
    });
  });

function asPolicyError(err: unknown): never {
  if (err instanceof ConfigError && !(err instanceof PolicyError))
    throw new PolicyError(err.problems, { cause: err });
  throw err;
}

/** Validates a parsed policy document; throws PolicyError. */
export function parsePolicyDocument(doc: unknown, label: string): Policy {
  try {
    const parsed = validateDocument(policySchema, doc, () => label, CODE);
    const rules: PolicyRule[] = parsed.rules.map((r) => ({ ...r }));
    return new Policy(rules, label);
  } catch (err) {
    return asPolicyError(err);
  }
}

/** Parses policy YAML text. */
export function parsePolicy(text: string, label = 'policy'): Policy {
  try {
    return parsePolicyDocument(parseYamlText(text, label, CODE), label);
  } catch (err) {
    return asPolicyError(err);
  }
}

/** Reads and validates a policy file; throws PolicyError. */
export function loadPolicyFile(file: string): Policy {
  const abs = resolve(file);
  const label = `policy ${abs}`;
  try {
    return parsePolicyDocument(readYamlFile(abs, label, CODE), label);
  } catch (err) {
    return asPolicyError(err);
  }
}
