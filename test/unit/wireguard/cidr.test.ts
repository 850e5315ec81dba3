import { describe, expect, it } from 'vitest';
import {
  canonicalAddress,
  canonicalCidr,
  canonicalEndpoint,
  formatEndpoint,
  WireguardError,
} from '../../../src/wireguard/index.js';

describe('prefixes and endpoints', () => {
  it('canonicalizes IPv4 prefixes', () => {
    expect(canonicalCidr('10.77.2.5/24')).toBe('10.77.2.0/24');
    expect(canonicalCidr('10.77.2.5')).toBe('10.77.2.5/32');
    expect(canonicalCidr('10.255.255.255/9')).toBe('10.128.0.0/9');
    expect(canonicalCidr('1.2.3.4/0')).toBe('0.0.0.0/0');
  });

  it('canonicalizes IPv6 prefixes like inet_ntop', () => {
    expect(canonicalCidr('fd00:0:0:0:0:0:0:1/64')).toBe('fd00::/64');
    expect(canonicalCidr('FD00:77:2::1/128')).toBe('fd00:77:2::1/128');
    expect(canonicalCidr('::1')).toBe('::1/128');
    expect(canonicalCidr('::/0')).toBe('::/0');
    expect(canonicalCidr('1:0:0:2:0:0:0:3/128')).toBe('1:0:0:2::3/128');
    expect(canonicalCidr('1:0:2:0:3:0:4:5/128')).toBe('1:0:2:0:3:0:4:5/128');
    expect(canonicalCidr('1:0:0:2:0:0:3:4/128')).toBe('1::2:0:0:3:4/128');
    expect(canonicalCidr('::ffff:10.1.2.3/128')).toBe('::ffff:10.1.2.3/128');
    expect(canonicalAddress('2001:db8:0:0:0:0:2:1')).toBe('2001:db8::2:1');
  });

  it('rejects bad prefixes', () => {
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'nope/8', '10.0.0.0/', '10.0.0.0/-1', '']) {
      expect(() => canonicalCidr(bad)).toThrow(WireguardError);
    }
  });

  it('formats and parses endpoints', () => {
    expect(formatEndpoint('192.168.77.2', 51820)).toBe('192.168.77.2:51820');
    expect(formatEndpoint('fd00:0::2', 51820)).toBe('[fd00::2]:51820');
    expect(canonicalEndpoint('[FD00::2]:1')).toBe('[fd00::2]:1');
    expect(canonicalEndpoint('10.0.0.1:51820')).toBe('10.0.0.1:51820');
    for (const bad of ['10.0.0.1', 'host.example:51820', 'fd00::2:51820', '10.0.0.1:0', '10.0.0.1:70000']) {
      expect(() => canonicalEndpoint(bad)).toThrow(WireguardError);
    }
  });
});
