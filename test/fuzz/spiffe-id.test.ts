/**
 * Fuzz target: SPIFFE ID and trust domain parsing (SPIFFE ID spec §2). Differential: the parser
 * accepts exactly what a reference expression written from the spec's grammar accepts, keeps the
 * text as is (canonical form), and fails only with SpiffeIdError.
 */
import { describe, expect, it } from 'vitest';
import { parseSpiffeId, parseTrustDomain } from '../../src/spiffe/index.js';
import { corpus, fc, fuzzSync, mutatedBytes, seeds, typedOnly, timeoutFor } from './harness.js';

const TARGET = 'spiffe-id';
const CI_SECONDS = 3;

/** SPIFFE ID spec §2.1-2.2: lower-case trust domain of [a-z0-9._-]; segments of [A-Za-z0-9._-], not . or .. */
const ID_RE = /^spiffe:\/\/([a-z0-9._-]+)((?:\/[A-Za-z0-9._-]+)*)$/;

function referenceValid(text: string): boolean {
  const m = ID_RE.exec(text);
  if (!m) return false;
  if (Buffer.byteLength(text) > 2048 || m[1]!.length > 255) return false;
  return m[2]!.split('/').every((s, i) => i === 0 || (s !== '.' && s !== '..'));
}

const tdChar = fc.constantFrom(...'abcz09.-_A:@%?#/ \u00e9'.split(''));
const segChar = fc.constantFrom(...'aZ09.-_%?#/ \u00e9\u0000'.split(''));
const structured = fc
  .tuple(
    fc.constantFrom('spiffe://', 'SPIFFE://', 'spiffe:/', 'http://', ''),
    fc.oneof(fc.string({ unit: tdChar, maxLength: 12 }), fc.constant('a'.repeat(256))),
    fc.array(fc.oneof(fc.string({ unit: segChar, maxLength: 6 }), fc.constantFrom('.', '..', '')), {
      maxLength: 5,
    }),
    fc.oneof(fc.constant(''), fc.constant('/'), fc.constant('x'.repeat(2100))),
  )
  .map(([scheme, td, segs, tail]) => scheme + td + segs.map((s) => '/' + s).join('') + tail);

const text = fc.oneof(
  structured,
  fc.string({ unit: 'binary', maxLength: 40 }),
  mutatedBytes(seeds(TARGET)).map((b) => b.toString('utf8')),
);

function check(s: string): void {
  const r = typedOnly(['MESHAUTH_ERR_SPIFFE_ID'], () => parseSpiffeId(s));
  expect(r.ok).toBe(referenceValid(s));
  if (r.ok) {
    expect(r.value.toString()).toBe(s);
    expect(r.value.trustDomain.idString() + r.value.path).toBe(s);
  }
  const td = typedOnly(['MESHAUTH_ERR_SPIFFE_ID'], () => parseTrustDomain(s));
  if (td.ok) {
    const asId = s.startsWith('spiffe://') ? s : `spiffe://${s}`;
    expect(referenceValid(asId) && !asId.slice(9).includes('/')).toBe(true);
    expect(td.value.idString()).toBe(asId);
  }
}

describe('fuzz: SPIFFE IDs', () => {
  it('seed corpus: only the well-formed IDs parse', () => {
    const ok = corpus(TARGET)
      .filter((f) => typedOnly(['MESHAUTH_ERR_SPIFFE_ID'], () => parseSpiffeId(f.data.toString('utf8'))).ok)
      .map((f) => f.name);
    expect(ok.sort()).toEqual(['trust-domain', 'workload']);
  });

  it(
    'parser agrees with the spec grammar on any text',
    () => {
      fuzzSync(TARGET, CI_SECONDS, text, check);
    },
    timeoutFor(CI_SECONDS),
  );
});
