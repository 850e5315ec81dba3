import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditStore, MemoryAuditSink, type AuditEventInput } from '../../../src/audit/index.js';
import {
  POLICY_RECORD_MAX_NAME_CHARS,
  POLICY_RECORD_MAX_NAMES,
  PolicyTrail,
  policyChangedEvent,
} from '../../../src/daemon/policy-trail.js';
import {
  parseIdPattern,
  parsePolicyDocument,
  policyDigest,
  type IdPattern,
  type Policy,
} from '../../../src/policy/index.js';
import {
  KubernetesPolicySource,
  type PolicyConverter,
  type PolicyObject,
} from '../../../src/kubernetes/policy-source.js';
import { silentLogger } from '../../../src/log.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeInformer } from '../kubernetes/fake-informer.js';

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const API = 'spiffe://demo.local/ns/demo/sa/api';
const DB = 'spiffe://demo.local/ns/demo/sa/db';

type RuleDoc = { name: string; from: string; to: string; mode?: string };
const policy = (rules: RuleDoc[]): Policy => parsePolicyDocument({ rules }, 'test');
const WEB_API: RuleDoc = { name: 'web-api', from: WEB, to: API };
const API_DB: RuleDoc = { name: 'api-db', from: API, to: DB, mode: 'permissive' };

const none = { count: 0, names: [] };

describe('policyChangedEvent', () => {
  it('describes the first policy: every rule added, the digest, the modes, no previous digest', () => {
    const p = policy([WEB_API, API_DB, { name: 'off', from: WEB, to: DB, mode: 'disabled' }]);
    expect(
      policyChangedEvent(undefined, p, { kind: 'file', file: '/etc/meshauth/policy.yaml' }, 'daemon-start'),
    ).toEqual({
      type: 'policy-changed',
      outcome: 'info',
      reason: 'daemon-start',
      details: {
        source: 'file',
        file: '/etc/meshauth/policy.yaml',
        digest: policyDigest(p),
        rules: 3,
        modes: { required: 1, permissive: 1, disabled: 1 },
        added: { count: 3, names: ['api-db', 'off', 'web-api'] },
        removed: none,
        changed: none,
        modeChanged: { count: 0, rules: [] },
      },
    });
  });

  it('describes a change against the previous policy', () => {
    const before = policy([WEB_API, API_DB]);
    const after = policy([
      { ...WEB_API, mode: 'permissive' },
      { name: 'web-db', from: WEB, to: DB },
    ]);
    expect(policyChangedEvent(before, after, { kind: 'kubernetes' }, 'kubernetes-update')).toEqual({
      type: 'policy-changed',
      outcome: 'info',
      reason: 'kubernetes-update',
      details: {
        source: 'kubernetes',
        digest: policyDigest(after),
        previousDigest: policyDigest(before),
        rules: 2,
        modes: { required: 1, permissive: 1, disabled: 0 },
        added: { count: 1, names: ['web-db'] },
        removed: { count: 1, names: ['api-db'] },
        changed: { count: 1, names: ['web-api'] },
        modeChanged: { count: 1, rules: [{ name: 'web-api', from: 'required', to: 'permissive' }] },
      },
    });
  });

  it('stays bounded for a huge policy: the first names by name, each name cut, full counts', () => {
    const long = 'x'.repeat(2_000);
    const n = 1_000;
    const rules = (mode: string, prefix: string): RuleDoc[] =>
      Array.from({ length: n }, (_, i) => ({
        name: `${prefix}${String(i).padStart(5, '0')}-${long}`,
        from: WEB,
        to: API,
        mode,
      }));
    const before = policy([...rules('required', 'keep-'), ...rules('required', 'old-')]);
    const after = policy([...rules('disabled', 'keep-'), ...rules('required', 'new-')]);
    const e = policyChangedEvent(before, after, { kind: 'kubernetes' }, 'kubernetes-update');
    const d = e.details as Record<
      string,
      { count: number; names?: string[]; rules?: Array<{ name: string }> }
    >;
    for (const [key, prefix] of [
      ['added', 'new-'],
      ['removed', 'old-'],
      ['changed', 'keep-'],
    ] as const) {
      expect(d[key]!.count).toBe(n);
      const names = d[key]!.names!;
      expect(names).toHaveLength(POLICY_RECORD_MAX_NAMES);
      expect(names[0]).toBe(`${prefix}00000-${long}`.slice(0, POLICY_RECORD_MAX_NAME_CHARS - 1) + '…');
      expect(names.at(-1)!.startsWith(`${prefix}00063-`)).toBe(true);
      expect(names.every((x) => x.length === POLICY_RECORD_MAX_NAME_CHARS)).toBe(true);
    }
    expect(d['modeChanged']!.count).toBe(n);
    expect(d['modeChanged']!.rules).toHaveLength(POLICY_RECORD_MAX_NAMES);
    expect(d['modeChanged']!.rules![0]).toMatchObject({ from: 'required', to: 'disabled' });
    expect(d['modeChanged']!.rules![0]!.name).toHaveLength(POLICY_RECORD_MAX_NAME_CHARS);
    // 3,000 rules with 2 KB names (~6 MB of names) make a record of well under 100 KB.
    expect(JSON.stringify(e).length).toBeLessThan(100_000);
  });
  it('never cuts a name inside a surrogate pair', () => {
    const name = `${'a'.repeat(POLICY_RECORD_MAX_NAME_CHARS - 2)}\u{1F600}${'b'.repeat(10)}`;
    const e = policyChangedEvent(
      undefined,
      policy([{ name, from: WEB, to: API }]),
      { kind: 'kubernetes' },
      'daemon-start',
    );
    const [cutName] = (e.details as { added: { names: string[] } }).added.names;
    expect(cutName).toBe(`${'a'.repeat(POLICY_RECORD_MAX_NAME_CHARS - 2)}…`);
    // A lone surrogate would not survive a UTF-8 round trip.
    expect(Buffer.from(cutName!, 'utf8').toString('utf8')).toBe(cutName);
  });
});

describe('PolicyTrail', () => {
  it('records the policy at start, then only changes of the digest', () => {
    const sink = new MemoryAuditSink();
    const trail = new PolicyTrail(sink, { kind: 'file', file: '/p.yaml' });
    const first = policy([WEB_API, API_DB]);
    trail.start(first);
    expect(sink.events.map((e) => [e.type, e.reason])).toEqual([['policy-changed', 'daemon-start']]);

    // The same rules again (another object, reordered): nothing is recorded.
    expect(trail.changed(first)).toBe(false);
    expect(trail.changed(policy([API_DB, WEB_API]))).toBe(false);
    expect(sink.events).toHaveLength(1);

    const second = policy([WEB_API]);
    expect(trail.changed(second)).toBe(true);
    expect(sink.events[1]).toMatchObject({
      type: 'policy-changed',
      outcome: 'info',
      reason: 'file-reload',
      details: {
        source: 'file',
        file: '/p.yaml',
        previousDigest: policyDigest(first),
        digest: policyDigest(second),
        rules: 1,
        removed: { count: 1, names: ['api-db'] },
      },
    });
    // Back to the first policy: a change again, diffed against the last recorded one.
    expect(trail.changed(policy([API_DB, WEB_API]))).toBe(true);
    expect(sink.events[2]).toMatchObject({
      details: { previousDigest: policyDigest(second), added: { count: 1, names: ['api-db'] } },
    });
    expect(sink.events).toHaveLength(3);
  });

  it('writes records the hash chain covers and the store can filter by type', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-policy-trail-'));
    const store = AuditStore.open({ path: join(dir, 'audit.db') });
    try {
      const sink = { record: (e: AuditEventInput) => void store.append([e]) };
      const trail = new PolicyTrail(sink, { kind: 'kubernetes' });
      trail.start(policy([]));
      trail.changed(policy([WEB_API]));
      const rows = store.query({ types: ['policy-changed'], limit: 10 });
      expect(rows.map((r) => [r.reason, r.details?.['rules']])).toEqual([
        ['daemon-start', 0],
        ['kubernetes-update', 1],
      ]);
      expect(store.verifyChain().ok).toBe(true);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('PolicyTrail on the MutualAuthPolicy source', () => {
  /** spec = { mode, rules: [[from, to]] }; a "bad" from makes the object invalid. */
  const convert: PolicyConverter = (o) => {
    const spec = o.spec as { mode: 'required' | 'permissive'; rules: Array<[string, string]> };
    if (spec.rules.some(([f]) => f === 'bad')) return { ok: false, problems: ['rules[0].from: invalid'] };
    return {
      ok: true,
      rules: spec.rules.map(([f, t], i) => ({
        name: `r${i}`,
        from: parseIdPattern(f) as IdPattern,
        to: parseIdPattern(t) as IdPattern,
        auth: 'mutual' as const,
        mode: spec.mode,
      })),
    };
  };
  const obj = (
    name: string,
    generation: number,
    mode: string,
    rules: Array<[string, string]>,
  ): PolicyObject => ({
    metadata: { name, namespace: 'demo', generation },
    spec: { mode, rules },
  });

  it('records one event per applied batch of object events, none when the rules stay the same', async () => {
    const informer = new FakeInformer<PolicyObject>();
    const clock = new FakeClock(1_000_000);
    const src = new KubernetesPolicySource({ informer, convert, logger: silentLogger(), clock, batchMs: 5 });
    const sink = new MemoryAuditSink();
    const trail = new PolicyTrail(sink, { kind: 'kubernetes' });
    // As the daemon wires it: the policy at start, then every policy the source applies.
    informer.emit('add', obj('p1', 1, 'required', [[WEB, API]]));
    trail.start(await src.start());
    let applied = 0;
    src.onChange((p) => {
      applied++;
      trail.changed(p);
    });
    expect(sink.events).toHaveLength(1);
    expect(sink.events[0]).toMatchObject({
      reason: 'daemon-start',
      details: { source: 'kubernetes', rules: 1, added: { count: 1, names: ['demo/p1/r0'] } },
    });

    // Two object events inside one batch window: one application, one record.
    informer.emit('add', obj('p2', 1, 'required', [[API, DB]]));
    informer.emit('update', obj('p1', 2, 'permissive', [[WEB, API]]));
    clock.advance(5);
    expect(applied).toBe(1);
    expect(sink.events).toHaveLength(2);
    expect(sink.events[1]).toMatchObject({
      reason: 'kubernetes-update',
      details: {
        rules: 2,
        added: { count: 1, names: ['demo/p2/r0'] },
        changed: { count: 1, names: ['demo/p1/r0'] },
        modeChanged: { count: 1, rules: [{ name: 'demo/p1/r0', from: 'required', to: 'permissive' }] },
      },
    });

    // Applied again with the same rules (a new generation with the same spec; an invalid edit
    // whose last valid version stays): no record.
    informer.emit('update', obj('p1', 3, 'permissive', [[WEB, API]]));
    clock.advance(5);
    informer.emit('update', obj('p2', 2, 'required', [['bad', DB]]));
    clock.advance(5);
    expect(applied).toBe(3);
    expect(sink.events).toHaveLength(2);

    informer.emit('delete', obj('p2', 2, 'required', [['bad', DB]]));
    clock.advance(5);
    expect(applied).toBe(4);
    expect(sink.events).toHaveLength(3);
    expect(sink.events[2]).toMatchObject({
      reason: 'kubernetes-update',
      details: { rules: 1, removed: { count: 1, names: ['demo/p2/r0'] }, added: none, changed: none },
    });
    await src.close();
  });
});
