import { describe, expect, it } from 'vitest';
import { addressesOverlap } from '../../../src/config/schema.js';

describe('addressesOverlap (two TCP listeners on one port)', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1', 'equal addresses'],
    ['::1', '0:0::1', 'equal IPv6 addresses written differently'],
    ['0.0.0.0', '127.0.0.1', 'the IPv4 wildcard and an IPv4 address'],
    ['127.0.0.1', '0.0.0.0', 'an IPv4 address and the IPv4 wildcard'],
    ['0.0.0.0', '::ffff:10.0.0.1', 'the IPv4 wildcard and an IPv4-mapped IPv6 address'],
    ['::', '0.0.0.0', 'the dual-stack IPv6 wildcard and the IPv4 wildcard'],
    ['::', '127.0.0.1', 'the IPv6 wildcard and an IPv4 address'],
    ['fd00::1', '::', 'an IPv6 address and the IPv6 wildcard'],
    ['node-a.example', '10.0.0.1', 'a host name and an address (it may resolve to it)'],
    ['localhost', '::1', 'a host name and an IPv6 address'],
  ])('%s and %s overlap: %s', (a, b) => {
    expect(addressesOverlap(a, b)).toBe(true);
    expect(addressesOverlap(b, a)).toBe(true);
  });

  it.each([
    ['::1', '0.0.0.0', 'a specific IPv6 address and the IPv4 wildcard'],
    ['fd00::1', '0.0.0.0', 'a specific IPv6 address and the IPv4 wildcard'],
    ['127.0.0.1', '10.0.0.1', 'two different IPv4 addresses'],
    ['::1', 'fd00::1', 'two different IPv6 addresses'],
    ['127.0.0.1', '::1', 'IPv4 and IPv6 loopback'],
  ])('%s and %s do not overlap: %s', (a, b) => {
    expect(addressesOverlap(a, b)).toBe(false);
    expect(addressesOverlap(b, a)).toBe(false);
  });
});
