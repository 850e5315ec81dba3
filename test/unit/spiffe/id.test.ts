import { describe, expect, it } from 'vitest';
import {
  MAX_SPIFFE_ID_BYTES,
  MAX_TRUST_DOMAIN_BYTES,
  SpiffeIdError,
  parseSpiffeId,
  parseTrustDomain,
  spiffeIdProblem,
  trustDomainOf,
} from '../../../src/spiffe/index.js';

const TD_CHARS =
  'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
const PATH_CHARS = 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';

/** A SPIFFE ID of exactly `bytes` bytes. */
function idOfLength(bytes: number): string {
  const head = 'spiffe://example.org/';
  let path = '';
  while (head.length + path.length < bytes) path += path.length % 64 === 63 ? '/' : 'a';
  // never end on a slash
  if (path.endsWith('/')) path = `${path.slice(0, -2)}bb`;
  return head + path;
}

function problemOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SpiffeIdError);
    expect((err as SpiffeIdError).code).toBe('MESHAUTH_ERR_SPIFFE_ID');
    return (err as Error).message;
  }
  throw new Error('expected a SpiffeIdError');
}

describe('parseSpiffeId: invalid input', () => {
  const cases: Array<[rule: string, input: string, problem: string]> = [
    ['empty', '', 'cannot be empty'],
    ['no scheme', 'example.org/ns/a', 'scheme is missing or invalid'],
    ['other scheme', 'https://example.org/ns/a', 'scheme is missing or invalid'],
    ['upper-case scheme', 'SPIFFE://example.org/ns/a', 'scheme is missing or invalid'],
    ['mixed-case scheme', 'Spiffe://example.org/ns/a', 'scheme is missing or invalid'],
    ['one slash after the scheme', 'spiffe:/example.org/ns/a', 'scheme is missing or invalid'],
    ['leading space', ' spiffe://example.org/ns/a', 'scheme is missing or invalid'],
    ['scheme only', 'spiffe://', 'trust domain is missing'],
    ['path without a trust domain', 'spiffe:///ns/a', 'trust domain is missing'],
    ['query without a trust domain', 'spiffe://?x=1', 'trust domain is missing'],
    ['upper-case trust domain', 'spiffe://Example.org/ns/a', TD_CHARS],
    ['upper-case trust domain, no path', 'spiffe://EXAMPLE.ORG', TD_CHARS],
    ['space in trust domain', 'spiffe://exa mple.org/a', TD_CHARS],
    ['non-ASCII trust domain', 'spiffe://exämple.org/a', TD_CHARS],
    ['plus in trust domain', 'spiffe://a+b.org/a', TD_CHARS],
    ['IPv6 literal', 'spiffe://[::1]/a', TD_CHARS],
    [
      'percent-encoded trust domain',
      'spiffe://ex%61mple.org/a',
      `${TD_CHARS} (percent-encoding is not allowed)`,
    ],
    ['userinfo', 'spiffe://user@example.org/a', `${TD_CHARS} (userinfo is not allowed)`],
    ['userinfo with password', 'spiffe://user:pw@example.org/a', `${TD_CHARS} (a port is not allowed)`],
    ['port', 'spiffe://example.org:8443/a', `${TD_CHARS} (a port is not allowed)`],
    ['empty port', 'spiffe://example.org:/a', `${TD_CHARS} (a port is not allowed)`],
    [
      'query after trust domain',
      'spiffe://example.org?x=1',
      `${TD_CHARS} (a query or fragment is not allowed)`,
    ],
    [
      'fragment after trust domain',
      'spiffe://example.org#frag',
      `${TD_CHARS} (a query or fragment is not allowed)`,
    ],
    ['query before a path', 'spiffe://example.org?x=/a', `${TD_CHARS} (a query or fragment is not allowed)`],
    [
      'trust domain over 255 bytes',
      `spiffe://${'a'.repeat(MAX_TRUST_DOMAIN_BYTES + 1)}/a`,
      'trust domain is longer than 255 bytes',
    ],
    ['trailing slash', 'spiffe://example.org/', 'path cannot have a trailing slash'],
    ['trailing slash after a segment', 'spiffe://example.org/ns/a/', 'path cannot have a trailing slash'],
    ['empty segment', 'spiffe://example.org//a', 'path cannot contain empty segments'],
    ['empty segment in the middle', 'spiffe://example.org/ns//a', 'path cannot contain empty segments'],
    ['dot segment', 'spiffe://example.org/./a', 'path cannot contain dot segments'],
    ['dot-dot segment', 'spiffe://example.org/ns/../a', 'path cannot contain dot segments'],
    ['final dot segment', 'spiffe://example.org/ns/.', 'path cannot contain dot segments'],
    ['final dot-dot segment', 'spiffe://example.org/ns/..', 'path cannot contain dot segments'],
    [
      'percent-encoded path',
      'spiffe://example.org/ns%2Fa',
      `${PATH_CHARS} (percent-encoding is not allowed)`,
    ],
    [
      'percent-encoded space',
      'spiffe://example.org/a%20b',
      `${PATH_CHARS} (percent-encoding is not allowed)`,
    ],
    ['query in path', 'spiffe://example.org/ns/a?x=1', `${PATH_CHARS} (a query is not allowed)`],
    ['fragment in path', 'spiffe://example.org/ns/a#frag', `${PATH_CHARS} (a fragment is not allowed)`],
    ['space in path', 'spiffe://example.org/a b', PATH_CHARS],
    ['non-ASCII path', 'spiffe://example.org/ns/caf\u00e9', PATH_CHARS],
    ['colon in path', 'spiffe://example.org/ns:a', PATH_CHARS],
    ['at sign in path', 'spiffe://example.org/a@b', PATH_CHARS],
    ['tilde in path', 'spiffe://example.org/~a', PATH_CHARS],
    ['newline at the end', 'spiffe://example.org/a\n', PATH_CHARS],
    ['backslash', 'spiffe://example.org/a\\b', PATH_CHARS],
    ['over 2048 bytes', idOfLength(MAX_SPIFFE_ID_BYTES + 1), 'is longer than 2048 bytes'],
  ];

  it.each(cases)('%s: %j', (_rule, input, problem) => {
    const message = problemOf(() => parseSpiffeId(input));
    expect(message.startsWith('parse SPIFFE ID "')).toBe(true);
    expect(message.endsWith(`: ${problem}`)).toBe(true);
    expect(spiffeIdProblem(input)).toBe(problem);
  });

  it('counts bytes, not characters, against the 2048-byte limit', () => {
    // Exactly at the limit is fine; swapping the last ASCII character for a two-byte one is not.
    const atLimit = idOfLength(MAX_SPIFFE_ID_BYTES);
    expect(Buffer.byteLength(atLimit)).toBe(MAX_SPIFFE_ID_BYTES);
    expect(parseSpiffeId(atLimit).toString()).toBe(atLimit);
    const over = `${atLimit.slice(0, -1)}\u00e9`;
    expect(over.length).toBe(MAX_SPIFFE_ID_BYTES);
    expect(spiffeIdProblem(over)).toBe('is longer than 2048 bytes');
  });

  it('clips very long input in the message', () => {
    const message = problemOf(() => parseSpiffeId(idOfLength(5000)));
    expect(message.length).toBeLessThan(200);
    expect(message).toContain('...');
  });

  it('rejects a value that is not a string', () => {
    expect(problemOf(() => parseSpiffeId(42 as unknown as string))).toBe('parse SPIFFE ID: not a string');
    expect(problemOf(() => parseTrustDomain(undefined as unknown as string))).toBe(
      'parse trust domain: not a string',
    );
  });
});

describe('parseSpiffeId: valid input', () => {
  const cases: Array<[rule: string, input: string, td: string, path: string]> = [
    ['trust domain only', 'spiffe://example.org', 'example.org', ''],
    ['Kubernetes form', 'spiffe://demo.local/ns/demo/sa/web', 'demo.local', '/ns/demo/sa/web'],
    ['every trust domain character', 'spiffe://a-b_c.0-9', 'a-b_c.0-9', ''],
    ['single-character trust domain', 'spiffe://x/y', 'x', '/y'],
    ['trust domain of dots', 'spiffe://.../a', '...', '/a'],
    ['upper case in path', 'spiffe://example.org/NS/Web-API_v2', 'example.org', '/NS/Web-API_v2'],
    ['segment starting with a dot', 'spiffe://example.org/.path', 'example.org', '/.path'],
    ['segment starting with two dots', 'spiffe://example.org/..path', 'example.org', '/..path'],
    ['three dots', 'spiffe://example.org/...', 'example.org', '/...'],
    ['segment ending with a dot', 'spiffe://example.org/a./b..', 'example.org', '/a./b..'],
    ['digits only', 'spiffe://1.2.3.4/5', '1.2.3.4', '/5'],
    ['trust domain of 255 bytes', `spiffe://${'a'.repeat(255)}/x`, 'a'.repeat(255), '/x'],
    [
      'exactly 2048 bytes',
      idOfLength(MAX_SPIFFE_ID_BYTES),
      'example.org',
      idOfLength(MAX_SPIFFE_ID_BYTES).slice('spiffe://example.org'.length),
    ],
  ];

  it.each(cases)('%s', (_rule, input, td, path) => {
    const id = parseSpiffeId(input);
    expect(id.trustDomain.name).toBe(td);
    expect(id.path).toBe(path);
    expect(id.toString()).toBe(input);
    expect(id.toJSON()).toBe(input);
    expect(id.isRoot).toBe(path === '');
    expect(spiffeIdProblem(input)).toBeUndefined();
    expect(trustDomainOf(input)).toBe(td);
  });

  it('is immutable and compares by value', () => {
    const a = parseSpiffeId('spiffe://example.org/ns/a/sa/b');
    const b = parseSpiffeId('spiffe://example.org/ns/a/sa/b');
    expect(a).not.toBe(b);
    expect(a.equals(b)).toBe(true);
    expect(a.equals(parseSpiffeId('spiffe://example.org/ns/a/sa/c'))).toBe(false);
    expect(a.segments()).toEqual(['ns', 'a', 'sa', 'b']);
    expect(parseSpiffeId('spiffe://example.org').segments()).toEqual([]);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.trustDomain)).toBe(true);
    expect(() => {
      (a as unknown as { path: string }).path = '/x';
    }).toThrow(TypeError);
    expect(JSON.stringify({ id: a })).toBe('{"id":"spiffe://example.org/ns/a/sa/b"}');
    expect(`${a}`).toBe('spiffe://example.org/ns/a/sa/b');
  });
});

describe('parseTrustDomain', () => {
  it.each([
    ['example.org', 'example.org'],
    ['spiffe://example.org', 'example.org'],
    ['a-b_c.d', 'a-b_c.d'],
    ['a'.repeat(255), 'a'.repeat(255)],
  ])('accepts %j', (input, name) => {
    const td = parseTrustDomain(input);
    expect(td.name).toBe(name);
    expect(td.idString()).toBe(`spiffe://${name}`);
    expect(td.toString()).toBe(name);
    expect(td.equals(parseTrustDomain(`spiffe://${name}`))).toBe(true);
  });

  const cases: Array<[rule: string, input: string, message: string]> = [
    ['empty', '', 'parse trust domain "": trust domain is missing'],
    ['upper case', 'Example.org', `parse trust domain "Example.org": ${TD_CHARS}`],
    ['port', 'example.org:443', `parse trust domain "example.org:443": ${TD_CHARS} (a port is not allowed)`],
    [
      'userinfo',
      'me@example.org',
      `parse trust domain "me@example.org": ${TD_CHARS} (userinfo is not allowed)`,
    ],
    [
      'percent-encoding',
      'ex%41.org',
      `parse trust domain "ex%41.org": ${TD_CHARS} (percent-encoding is not allowed)`,
    ],
    [
      'query',
      'example.org?x',
      `parse trust domain "example.org?x": ${TD_CHARS} (a query or fragment is not allowed)`,
    ],
    [
      'fragment',
      'example.org#x',
      `parse trust domain "example.org#x": ${TD_CHARS} (a query or fragment is not allowed)`,
    ],
    ['a path', 'example.org/ns', `parse trust domain "example.org/ns": ${TD_CHARS}`],
    [
      'other scheme',
      'https://example.org',
      'parse trust domain "https://example.org": scheme is missing or invalid',
    ],
    [
      'upper-case scheme',
      'Spiffe://example.org',
      'parse trust domain "Spiffe://example.org": scheme is missing or invalid',
    ],
    ['over 255 bytes', 'a'.repeat(256), 'trust domain is longer than 255 bytes'],
    [
      'SPIFFE ID with a path',
      'spiffe://example.org/ns/a',
      'parse trust domain "spiffe://example.org/ns/a": a trust domain ID has no path',
    ],
    [
      'SPIFFE ID with a trailing slash',
      'spiffe://example.org/',
      'parse SPIFFE ID "spiffe://example.org/": path cannot have a trailing slash',
    ],
    ['invalid SPIFFE ID', 'spiffe://Example.org', `parse SPIFFE ID "spiffe://Example.org": ${TD_CHARS}`],
  ];

  it.each(cases)('rejects %s', (_rule, input, message) => {
    expect(problemOf(() => parseTrustDomain(input)).endsWith(message)).toBe(true);
  });
});
