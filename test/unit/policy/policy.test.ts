import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  loadPolicyFile,
  parseIdPattern,
  parsePolicy,
  policyRequires,
  PolicyError,
} from '../../../src/policy/index.js';

const dir = mkdtempSync(join(tmpdir(), 'meshauth-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const API = 'spiffe://demo.local/ns/demo/sa/api';
const PROM = 'spiffe://demo.local/ns/monitoring/sa/prometheus';

describe('SPIFFE ID patterns', () => {
  const cases: Array<[string, string, boolean]> = [
    ['*', WEB, true],
    ['*', 'spiffe://other.org/x', true],
    [WEB, WEB, true],
    [WEB, API, false],
    [WEB, `${WEB}/extra`, false],
    ['spiffe://demo.local/ns/demo/*', WEB, true],
    ['spiffe://demo.local/ns/demo/*', 'spiffe://demo.local/ns/demo/x', true],
    ['spiffe://demo.local/ns/demo/*', 'spiffe://demo.local/ns/demo', false],
    ['spiffe://demo.local/ns/demo/*', 'spiffe://demo.local/ns/demo-evil/sa/web', false],
    ['spiffe://demo.local/ns/demo/*', 'spiffe://other.local/ns/demo/sa/web', false],
    ['spiffe://demo.local/ns/*/sa/web', WEB, true],
    ['spiffe://demo.local/ns/*/sa/web', 'spiffe://demo.local/ns/a/b/sa/web', false],
    ['spiffe://demo.local/ns/demo/sa/web-*', 'spiffe://demo.local/ns/demo/sa/web-2', true],
    ['spiffe://demo.local/ns/demo/sa/web-*', 'spiffe://demo.local/ns/demo/sa/web', false],
    ['spiffe://demo.local/ns/demo/sa/w*b', WEB, true],
    ['spiffe://demo.local/ns/demo/sa/w.b', 'spiffe://demo.local/ns/demo/sa/wxb', false],
  ];
  it.each(cases)('%s matches %s: %s', (pattern, id, expected) => {
    const p = parseIdPattern(pattern);
    if (typeof p === 'string') throw new Error(p);
    expect(p.matches(id)).toBe(expected);
  });

  it.each([
    ['spiffe://*.local/x', 'may use "*" only in the path, not in the trust domain'],
    ['spiffe://demo.local/**', 'must not contain "**" (a final "/*" already matches deeper paths)'],
    ['spiffe://demo.local/ns/*/', 'has an empty path segment (or a trailing slash)'],
    ['demo.local/*', 'must be "*", a SPIFFE ID, or a pattern starting with "spiffe://"'],
    [
      'spiffe://demo.local',
      'is not a valid SPIFFE ID or pattern: has no path (a workload ID looks like spiffe://<trust-domain>/<path>)',
    ],
    [
      'spiffe://demo.local/a?b',
      'is not a valid SPIFFE ID or pattern: path segment characters are limited to letters, numbers, dots, dashes, and underscores (a query is not allowed)',
    ],
  ])('rejects %s', (pattern, reason) => {
    expect(parseIdPattern(pattern)).toBe(reason);
  });
});

describe('policy', () => {
  const policy = parsePolicy(`rules:
  - { name: web-api, from: "${WEB}", to: "${API}", auth: mutual }
  - { name: ns-wide, from: "spiffe://demo.local/ns/demo/*", to: "spiffe://demo.local/ns/demo/*", mode: disabled }
  - { name: prom-any, from: "${PROM}", to: "*" }
`);

  it('matches exact rules in both directions', () => {
    expect(policy.requires(WEB, API)).toBe(true);
    expect(policy.requires(API, WEB)).toBe(true);
    expect(policyRequires(policy, API, WEB)).toBe(true);
    expect(policy.matchingRule(API, WEB)?.name).toBe('web-api');
  });

  it('ignores disabled rules', () => {
    expect(policy.requires(WEB, 'spiffe://demo.local/ns/demo/sa/db')).toBe(false);
  });

  it('matches the "*" wildcard against anything, both directions', () => {
    expect(policy.requires(PROM, 'spiffe://x.org/anything')).toBe(true);
    expect(policy.requires('spiffe://x.org/anything', PROM)).toBe(true);
    expect(policy.requiresWithAnyone(PROM)?.name).toBe('prom-any');
    expect(policy.requiresWithAnyone(WEB)).toBeUndefined();
  });

  it('matches globs', () => {
    const p = parsePolicy(
      `rules:\n  - { name: ns, from: "spiffe://demo.local/ns/demo/*", to: "spiffe://demo.local/ns/monitoring/*" }\n`,
    );
    expect(p.requires(PROM, WEB)).toBe(true);
    expect(p.requires(WEB, PROM)).toBe(true);
    expect(p.requires(WEB, API)).toBe(false);
    expect(p.rules[0]).toMatchObject({ name: 'ns', auth: 'mutual', mode: 'required' });
  });

  it('an empty rule list requires nothing', () => {
    expect(parsePolicy('rules: []\n').requires(WEB, API)).toBe(false);
  });

  it('loads the example policy', () => {
    const p = loadPolicyFile('examples/policy.yaml');
    expect(p.requires(WEB, API)).toBe(true);
    expect(p.requires(PROM, API)).toBe(false);
  });
});

describe('policy validation', () => {
  const cases: Array<[string, string, string[]]> = [
    ['missing rules', 'rule: []\n', ['rules: is required', 'rule: unknown key (did you mean "rules"?)']],
    ['missing to', 'rules:\n  - { name: a, from: "*" }\n', ['rules[0].to: is required']],
    [
      'bad auth',
      'rules:\n  - { name: a, from: "*", to: "*", auth: tls }\n',
      ['rules[0].auth: must be one of "mutual" (got "tls")'],
    ],
    [
      'bad mode',
      'rules:\n  - { name: a, from: "*", to: "*", mode: off }\n',
      ['rules[0].mode: must be one of "required", "permissive", "disabled" (got "off")'],
    ],
    [
      'the MutualAuthPolicy mode word',
      'rules:\n  - { name: a, from: "*", to: "*", mode: enforce }\n',
      [
        'rules[0].mode: must be one of "required", "permissive", "disabled" (got "enforce") ("enforce" is the MutualAuthPolicy word; in the policy file it is "required")',
      ],
    ],
    [
      'bad pattern',
      'rules:\n  - { name: a, from: "spiffe://*.x/y", to: "*" }\n',
      ['rules[0].from: may use "*" only in the path, not in the trust domain (got "spiffe://*.x/y")'],
    ],
    [
      'duplicate names',
      'rules:\n  - { name: a, from: "*", to: "*" }\n  - { name: a, from: "*", to: "*" }\n',
      ['rules[1].name: duplicate rule name "a" (also rules[0])'],
    ],
    [
      'unknown rule key',
      'rules:\n  - { name: a, from: "*", to: "*", direction: both }\n',
      ['rules[0].direction: unknown key'],
    ],
  ];
  it.each(cases)('%s', (_name, text, expected) => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, text);
    let err: unknown;
    try {
      loadPolicyFile(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).code).toBe('MESHAUTH_ERR_POLICY');
    expect((err as PolicyError).problems).toEqual(expected.map((e) => `policy ${file}: ${e}`));
  });

  it('reports YAML syntax errors with their position', () => {
    const file = join(dir, 'syntax.yaml');
    writeFileSync(file, 'rules:\n  - name: "a\n');
    expect(() => loadPolicyFile(file)).toThrow(
      new RegExp(`^policy ${file}: line \\d+, column \\d+: YAML syntax error: `),
    );
  });
});
