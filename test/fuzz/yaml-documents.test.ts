/**
 * Fuzz targets: the YAML documents an operator or a file on disk hands the daemon: the config
 * (with MESHAUTH_* environment overrides), the inventory and the policy. Inputs: byte mutations of
 * the example files and adversarial seeds (alias bombs, merge keys, tags, duplicate keys), and
 * structural mutations that replace, drop or duplicate any node of the parsed example with odd
 * values. Invariants: only ConfigError / InventoryError / PolicyError with their stable codes;
 * alias expansion bounded (no document grows past the limit); an accepted inventory is consistent
 * (every workload on a listed node, every SPIFFE ID and address valid, lookups agree); an accepted
 * policy covers every pair in both directions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { describeOptions, loadConfig } from '../../src/config/index.js';
import { parseInventory } from '../../src/inventory/index.js';
import { parsePolicy } from '../../src/policy/load.js';
import { policyRequires } from '../../src/policy/policy.js';
import { parseSpiffeId } from '../../src/spiffe/index.js';
import {
  applyDocOp,
  corpus,
  docOp,
  fc,
  fuzzSync,
  mutatedBytes,
  oddValue,
  seeds,
  timeoutFor,
  typedOnly,
  type Json,
} from './harness.js';

const CI_SECONDS = 2;

/** YAML texts: mutated bytes of the seeds, or a structurally mutated seed document. */
function yamlInputs(target: string): fc.Arbitrary<string> {
  const texts = seeds(target);
  const docs = texts.flatMap((t) => {
    try {
      // JSON round trip: tagged scalars (!!binary) become plain data the mutator can walk.
      return [
        JSON.parse(JSON.stringify(parseYaml(t.toString('utf8'), { maxAliasCount: 100 }) ?? null)) as Json,
      ];
    } catch {
      return [];
    }
  });
  return fc.oneof(
    mutatedBytes(texts, 4).map((b) => b.toString('utf8')),
    fc
      .tuple(fc.constantFrom(...docs), fc.array(docOp, { minLength: 1, maxLength: 4 }))
      .map(([d, ops]) => stringifyYaml(ops.reduce(applyDocOp, d))),
  );
}

const ID_POOL = [
  'spiffe://demo.local/ns/demo/sa/web',
  'spiffe://demo.local/ns/demo/sa/api',
  'spiffe://demo.local/ns/demo/sa/client',
  'spiffe://demo.local/ns/other/sa/web',
  'spiffe://other.test/ns/demo/sa/web',
];

describe('fuzz: YAML documents', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshauth-fuzz-yaml-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('corpus: examples load; adversarial seeds fail with typed errors', () => {
    for (const f of corpus('policy')) {
      const r = typedOnly(['MESHAUTH_ERR_POLICY'], () => parsePolicy(f.data.toString('utf8'), f.name));
      expect(r.ok, f.name).toBe(f.name === 'policy.yaml');
    }
    for (const f of corpus('inventory')) {
      const r = typedOnly(['MESHAUTH_ERR_INVENTORY'], () => parseInventory(f.data.toString('utf8'), f.name));
      expect(r.ok, f.name).toBe(f.name === 'inventory.yaml');
    }
    const file = join(dir, 'seed.yaml');
    for (const f of corpus('config')) {
      writeFileSync(file, f.data);
      const r = typedOnly(['MESHAUTH_ERR_CONFIG'], () => loadConfig({ file, env: {} }));
      expect(r.ok, f.name).toBe(f.name !== 'duplicate-keys.yaml');
    }
  });

  it('regression: an alias bomb is a ConfigError naming the file, not a raw ReferenceError', () => {
    // Found by this target: the yaml library's alias limit threw its own ReferenceError out of
    // parseYamlText, so the daemon reported an untyped error for a hostile policy file.
    const bomb = corpus('policy')
      .find((f) => f.name === 'alias-bomb.yaml')!
      .data.toString('utf8');
    const r = typedOnly(['MESHAUTH_ERR_POLICY'], () => parsePolicy(bomb, 'policy bomb.yaml'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.message).toMatch(/^policy bomb\.yaml: YAML: Excessive alias count/);
  });

  it(
    'policy: typed errors only; an accepted policy covers pairs in both directions',
    () => {
      fuzzSync('policy', CI_SECONDS, yamlInputs('policy'), (text) => {
        const r = typedOnly(['MESHAUTH_ERR_POLICY'], () => parsePolicy(text, 'fuzz'));
        if (!r.ok) return;
        for (const a of ID_POOL)
          for (const b of ID_POOL) expect(policyRequires(r.value, a, b)).toBe(policyRequires(r.value, b, a));
      });
    },
    timeoutFor(CI_SECONDS),
  );

  it(
    'inventory: typed errors only; an accepted inventory is consistent',
    () => {
      fuzzSync('inventory', CI_SECONDS, yamlInputs('inventory'), (text) => {
        const r = typedOnly(['MESHAUTH_ERR_INVENTORY'], () => parseInventory(text, 'fuzz'));
        if (!r.ok) return;
        const inv = r.value;
        const names = new Set(inv.nodes().map((n) => n.name));
        for (const w of inv.workloads()) {
          expect(names.has(w.node)).toBe(true);
          expect(parseSpiffeId(w.spiffeId).isRoot).toBe(false);
          expect(inv.isWorkloadOnNode(w.spiffeId, w.node)).toBe(true);
          for (const ip of w.ips) {
            expect(isIP(ip)).not.toBe(0);
            expect(inv.workloadByIp(ip)?.name).toBe(w.name);
          }
        }
      });
    },
    timeoutFor(CI_SECONDS),
  );

  it(
    'config (file and MESHAUTH_* environment): typed errors only, deterministic',
    () => {
      const file = join(dir, 'config.yaml');
      const options = describeOptions();
      const env = fc.dictionary(
        fc.constantFrom(...options.map((o) => o.env)),
        fc.oneof(
          oddValue.map((v) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''))),
          fc.string({ maxLength: 10 }),
        ),
        { maxKeys: 3 },
      );
      fuzzSync('config', CI_SECONDS, fc.record({ text: yamlInputs('config'), env }), ({ text, env: e }) => {
        writeFileSync(file, text);
        const r = typedOnly(['MESHAUTH_ERR_CONFIG'], () => loadConfig({ file, env: e }));
        if (!r.ok) return;
        expect(loadConfig({ file, env: e })).toEqual(r.value);
      });
    },
    timeoutFor(CI_SECONDS),
  );
});
