import { describe, expect, it } from 'vitest';
import {
  cidrContains,
  hostCidr,
  normalizeIp,
  parseCidr,
  spiffeIdProblem,
} from '../../../src/config/index.js';

describe('addresses', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['FD00:0:0::1', 'fd00::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['::ffff:a00:1', '10.0.0.1'],
    [' 10.0.0.1 ', '10.0.0.1'],
  ])('normalizes %s to %s', (input, out) => {
    expect(normalizeIp(input)).toBe(out);
  });

  it.each(['10.0.0', '10.0.0.256', 'fd00::1::2', 'x', '', '10.0.0.1/32', '010.0.0.1', 'fe80::1%eth0'])(
    'rejects %j',
    (input) => {
      expect(normalizeIp(input)).toBeUndefined();
    },
  );

  it('parses CIDRs canonically and refuses host bits', () => {
    expect(parseCidr('10.1.0.0/16')?.text).toBe('10.1.0.0/16');
    expect(parseCidr('FD00:0::/64')?.text).toBe('fd00::/64');
    expect(parseCidr('0.0.0.0/0')?.text).toBe('0.0.0.0/0');
    expect(parseCidr('10.1.0.1/16')).toBeUndefined();
    expect(parseCidr('10.1.0.0/33')).toBeUndefined();
    expect(parseCidr('10.1.0.0')).toBeUndefined();
    expect(parseCidr('10.1.0.0/x')).toBeUndefined();
    expect(parseCidr('::ffff:10.1.0.0/16')?.text).toBe('10.1.0.0/16');
    expect(parseCidr('fe80::%eth0/64')).toBeUndefined();
    expect(parseCidr('fd00::/128')?.text).toBe('fd00::/128');
  });

  it('tests membership within one family', () => {
    const v4 = parseCidr('10.1.0.0/16')!;
    expect(cidrContains(v4, '10.1.255.3')).toBe(true);
    expect(cidrContains(v4, '10.2.0.1')).toBe(false);
    expect(cidrContains(v4, '::ffff:10.1.0.9')).toBe(true);
    const v6 = parseCidr('fd00:a::/64')!;
    expect(cidrContains(v6, 'fd00:a::ffff')).toBe(true);
    expect(cidrContains(v6, 'fd00:b::1')).toBe(false);
    expect(cidrContains(v6, '10.1.0.1')).toBe(false);
  });

  it('makes host routes', () => {
    expect(hostCidr('10.0.0.5')).toBe('10.0.0.5/32');
    expect(hostCidr('FD00::5')).toBe('fd00::5/128');
    expect(() => hostCidr('nope')).toThrow(TypeError);
  });
});

describe('spiffeIdProblem', () => {
  it.each(['spiffe://demo.local/ns/demo/sa/web', 'spiffe://example.org/a_b-c.d', 'spiffe://x/y'])(
    'accepts %s',
    (id) => {
      expect(spiffeIdProblem(id)).toBeUndefined();
    },
  );

  // the reasons are the SPIFFE library's (src/spiffe/id.ts): config has no parser of its own
  it.each([
    ['http://demo.local/x', 'scheme is missing or invalid'],
    ['spiffe:///x', 'trust domain is missing'],
    [
      'spiffe://Demo.local/x',
      'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
    ],
    [
      'spiffe://demo.local:8443/x',
      'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (a port is not allowed)',
    ],
    [
      'spiffe://user@demo.local/x',
      'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (userinfo is not allowed)',
    ],
    ['spiffe://demo.local/x/', 'path cannot have a trailing slash'],
    ['spiffe://demo.local/x/../y', 'path cannot contain dot segments'],
    [
      'spiffe://demo.local/x?y=1',
      'path segment characters are limited to letters, numbers, dots, dashes, and underscores (a query is not allowed)',
    ],
    [
      'spiffe://demo.local/x#f',
      'path segment characters are limited to letters, numbers, dots, dashes, and underscores (a fragment is not allowed)',
    ],
    [
      'spiffe://demo.local/%41',
      'path segment characters are limited to letters, numbers, dots, dashes, and underscores (percent-encoding is not allowed)',
    ],
    [`spiffe://demo.local/${'a'.repeat(2040)}`, 'is longer than 2048 bytes'],
  ])('rejects %s', (id, reason) => {
    expect(spiffeIdProblem(id)).toBe(reason);
  });

  it('trust-domain-only IDs are accepted only when asked', () => {
    expect(spiffeIdProblem('spiffe://demo.local', false)).toBeUndefined();
    expect(spiffeIdProblem('spiffe://demo.local')).toMatch(/has no path/);
  });
});
