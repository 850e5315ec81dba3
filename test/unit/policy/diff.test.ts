import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { diffRules, parsePolicyDocument, policyDigest, type Policy } from '../../../src/policy/index.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const API = 'spiffe://demo.local/ns/demo/sa/api';
const DB = 'spiffe://demo.local/ns/demo/sa/db';

type RuleDoc = { name: string; from: string; to: string; mode?: string };
const policy = (rules: RuleDoc[]): Policy => parsePolicyDocument({ rules }, 'test');

const WEB_API: RuleDoc = { name: 'web-api', from: WEB, to: API };
const API_DB: RuleDoc = { name: 'api-db', from: API, to: DB, mode: 'permissive' };

describe('policyDigest', () => {
  it('is SHA-256 over the canonical JSON of the rules, sorted, keys sorted', () => {
    const text =
      `[{"auth":"mutual","from":"${API}","mode":"permissive","name":"api-db","to":"${DB}"},` +
      `{"auth":"mutual","from":"${WEB}","mode":"required","name":"web-api","to":"${API}"}]`;
    const expected = `sha256:${createHash('sha256').update(text).digest('hex')}`;
    expect(policyDigest(policy([WEB_API, API_DB]))).toBe(expected);
    expect(policyDigest(policy([]))).toBe(`sha256:${createHash('sha256').update('[]').digest('hex')}`);
  });

  it('does not depend on rule order (enforcement does not), but on every enforced field and the name', () => {
    const base = policyDigest(policy([WEB_API, API_DB]));
    expect(policyDigest(policy([API_DB, WEB_API]))).toBe(base);
    // Order really does not change enforcement: the same pair modes either way.
    for (const [a, b] of [
      [WEB, API],
      [API, DB],
      [WEB, DB],
    ] as const) {
      expect(policy([API_DB, WEB_API]).pairMode(a, b)).toBe(policy([WEB_API, API_DB]).pairMode(a, b));
    }
    const variants = [
      [WEB_API, { ...API_DB, mode: 'required' }],
      [WEB_API, { ...API_DB, mode: 'disabled' }],
      [WEB_API, { ...API_DB, to: WEB }],
      [WEB_API, { ...API_DB, from: 'spiffe://demo.local/ns/demo/*' }],
      [WEB_API, { ...API_DB, name: 'api-db-2' }],
      [WEB_API],
    ];
    const digests = variants.map((v) => policyDigest(policy(v)));
    expect(digests.every((d) => /^sha256:[0-9a-f]{64}$/.test(d))).toBe(true);
    expect(new Set([base, ...digests]).size).toBe(variants.length + 1);
  });
});

describe('diffRules', () => {
  it('lists added, removed and changed rules by name, sorted, and the mode changes', () => {
    const before = policy([WEB_API, API_DB, { name: 'z-keep', from: WEB, to: DB }]);
    const after = policy([
      { name: 'z-keep', from: WEB, to: DB },
      { name: 'b-new', from: DB, to: WEB },
      { ...WEB_API, mode: 'disabled' },
      { name: 'a-new', from: DB, to: API },
      { ...API_DB, mode: 'permissive', to: WEB },
    ]);
    expect(diffRules(before, after)).toEqual({
      added: ['a-new', 'b-new'],
      removed: [],
      changed: ['api-db', 'web-api'],
      modeChanged: [{ name: 'web-api', from: 'required', to: 'disabled' }],
    });
    expect(diffRules(after, before)).toEqual({
      added: [],
      removed: ['a-new', 'b-new'],
      changed: ['api-db', 'web-api'],
      modeChanged: [{ name: 'web-api', from: 'disabled', to: 'required' }],
    });
    expect(diffRules(before, policy([API_DB, { name: 'z-keep', from: WEB, to: DB }, WEB_API]))).toEqual({
      added: [],
      removed: [],
      changed: [],
      modeChanged: [],
    });
  });

  it('counts every rule as added when there was no policy before', () => {
    expect(diffRules(undefined, policy([WEB_API, API_DB]))).toEqual({
      added: ['api-db', 'web-api'],
      removed: [],
      changed: [],
      modeChanged: [],
    });
  });
});
