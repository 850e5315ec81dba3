import { describe, expect, it } from 'vitest';
import {
  formatIp,
  formatPrefix,
  hostPrefix,
  parseIp,
  parsePrefix,
  prefixContains,
  toIpv6Bytes,
  unmapIpv4,
  type IpAddress,
  type IpPrefix,
  type IpResult,
} from '../../../src/net/index.js';

function ok<T>(r: IpResult<T>): T {
  if (!r.ok) throw new Error(`expected success, got ${r.kind}: ${r.reason}`);
  return r.value;
}

function ip(text: string): IpAddress {
  return ok(parseIp(text));
}

function prefix(text: string, opts: Parameters<typeof parsePrefix>[1] = {}): IpPrefix {
  return ok(parsePrefix(text, opts));
}

describe('parseIp', () => {
  it('reads IPv4 and IPv6 into bytes', () => {
    expect(ip('10.1.2.3')).toEqual({ family: 4, bytes: [10, 1, 2, 3] });
    expect(ip('fd00::1').bytes).toEqual([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(ip('FD00:0:0::0001').bytes).toEqual(ip('fd00::1').bytes);
    expect(ip('::').bytes).toEqual(new Array(16).fill(0));
  });

  it('refuses IPv4 with leading zeros (which some parsers read as octal) and short or hex forms', () => {
    for (const bad of [
      '010.0.0.1',
      '10.0.0.01',
      '10.1',
      '167772161',
      '0x0a.0.0.1',
      '10.0.0.256',
      '1.2.3.4.5',
    ]) {
      const r = parseIp(bad);
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.kind).toBe('not-an-address');
    }
  });

  it('accepts leading zeros inside IPv6 groups (RFC 4291 2.2) but not five digits', () => {
    expect(formatIp(ip('fd00:0000:0000::0001'))).toBe('fd00::1');
    expect(parseIp('fd00:00001::1').ok).toBe(false);
  });

  it('refuses garbage', () => {
    for (const bad of [
      '',
      ' ',
      'x',
      '10.0.0.1/32',
      'fd00::1::2',
      ':::',
      '1:2:3:4:5:6:7:8:9',
      '[::1]',
      '::1 ',
      '１.2.3.4',
    ]) {
      expect(parseIp(bad).ok, JSON.stringify(bad)).toBe(false);
    }
  });

  it('refuses a zone unless asked to keep it', () => {
    const r = parseIp('fe80::1%eth0');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.kind).toBe('zone');
      expect(r.reason).toContain('%eth0');
    }
    expect(ok(parseIp('fe80::1%eth0', { zone: 'keep' }))).toMatchObject({ family: 6, zone: 'eth0' });
  });

  it('keeps IPv4-mapped IPv6 as IPv6 until unmapped, in dotted and hex form alike', () => {
    const dotted = ip('::ffff:10.0.0.1');
    expect(dotted.family).toBe(6);
    expect(unmapIpv4(dotted)).toEqual({ family: 4, bytes: [10, 0, 0, 1] });
    expect(unmapIpv4(ip('::ffff:a00:1'))).toEqual({ family: 4, bytes: [10, 0, 0, 1] });
    // IPv4-compatible (deprecated) and other IPv6 stay IPv6
    expect(unmapIpv4(ip('::10.0.0.1')).family).toBe(6);
    expect(unmapIpv4(ip('fd00::ffff:a00:1')).family).toBe(6);
    expect(parseIp('::ffff:010.0.0.1').ok).toBe(false);
  });
});

describe('formatIp', () => {
  it.each([
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4', '1::2:0:0:3:4'],
    ['1:0:2:0:3:0:4:5', '1:0:2:0:3:0:4:5', '1:0:2:0:3:0:4:5'],
    ['::1', '::1', '::1'],
    ['::', '::', '::'],
    ['1::', '1::', '1::'],
    ['::ffff:10.1.2.3', '::ffff:a01:203', '::ffff:10.1.2.3'],
    ['::10.1.2.3', '::a01:203', '::10.1.2.3'],
    ['::2', '::2', '::0.0.0.2'],
    ['1:0:0:0:0:0:0:0', '1::', '1::'],
  ])('%s: RFC 5952 %s, inet_ntop %s', (input, rfc, ntop) => {
    expect(formatIp(ip(input))).toBe(rfc);
    expect(formatIp(ip(input), 'inet_ntop')).toBe(ntop);
  });

  it('writes IPv4 in dotted decimal', () => {
    expect(formatIp(ip('192.0.2.1'), 'inet_ntop')).toBe('192.0.2.1');
  });
});

describe('parsePrefix', () => {
  it('reads network and length, /0 to /32 and /128', () => {
    expect(formatPrefix(prefix('0.0.0.0/0'))).toBe('0.0.0.0/0');
    expect(formatPrefix(prefix('::/0'))).toBe('::/0');
    expect(formatPrefix(prefix('10.1.2.3/32'))).toBe('10.1.2.3/32');
    expect(formatPrefix(prefix('fd00::1/128'))).toBe('fd00::1/128');
    expect(prefix('10.1.0.0/16')).toEqual({ family: 4, bytes: [10, 1, 0, 0], length: 16 });
  });

  it('refuses host bits unless asked to clear them', () => {
    const r = parsePrefix('10.1.2.3/24');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.kind).toBe('host-bits-set');
    expect(parsePrefix('fd00::1/64').ok).toBe(false);
    expect(formatPrefix(prefix('10.1.2.3/24', { hostBits: 'clear' }))).toBe('10.1.2.0/24');
    expect(formatPrefix(prefix('1.2.3.4/0', { hostBits: 'clear' }))).toBe('0.0.0.0/0');
    expect(formatPrefix(prefix('fd00:1:2:3::9/64', { hostBits: 'clear' }))).toBe('fd00:1:2:3::/64');
    expect(formatPrefix(prefix('10.255.255.255/9', { hostBits: 'clear' }))).toBe('10.128.0.0/9');
  });

  it('takes a bare address as the host prefix only when asked', () => {
    expect(parsePrefix('10.0.0.1').ok).toBe(false);
    expect(prefix('10.0.0.1', { bareAddress: true }).length).toBe(32);
    expect(prefix('fd00::1', { bareAddress: true }).length).toBe(128);
  });

  it.each([
    ['10.0.0.0/33', 'bad-prefix-length'],
    ['fd00::/129', 'bad-prefix-length'],
    ['10.0.0.0/', 'bad-prefix-length'],
    ['10.0.0.0/-1', 'bad-prefix-length'],
    ['10.0.0.0/x', 'bad-prefix-length'],
    ['10.0.0.0/08x', 'bad-prefix-length'],
    ['10.0.0.0/1000', 'bad-prefix-length'],
    ['10.0.0.0/8/8', 'bad-prefix-length'],
    ['nope/8', 'not-an-address'],
    ['/8', 'not-an-address'],
    ['010.0.0.0/8', 'not-an-address'],
    ['fe80::%eth0/64', 'zone'],
  ])('refuses %j (%s)', (text, kind) => {
    const r = parsePrefix(text, { hostBits: 'clear' });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.kind).toBe(kind);
  });

  it('counts an IPv4-mapped prefix in IPv4 bits only when unmapping', () => {
    expect(formatPrefix(prefix('::ffff:10.0.0.0/8', { mapped: 'unmap' }))).toBe('10.0.0.0/8');
    expect(formatPrefix(prefix('::ffff:10.0.0.0/104'))).toBe('::ffff:a00:0/104');
    expect(parsePrefix('::ffff:10.0.0.0/104', { mapped: 'unmap' }).ok).toBe(false);
  });
});

describe('prefixContains', () => {
  it('tests membership within one family', () => {
    expect(prefixContains(prefix('10.1.0.0/16'), ip('10.1.255.3'))).toBe(true);
    expect(prefixContains(prefix('10.1.0.0/16'), ip('10.2.0.1'))).toBe(false);
    expect(prefixContains(prefix('0.0.0.0/0'), ip('203.0.113.9'))).toBe(true);
    expect(prefixContains(prefix('fd00:a::/64'), ip('fd00:a::ffff'))).toBe(true);
    expect(prefixContains(prefix('fd00:a::/64'), ip('fd00:b::1'))).toBe(false);
    expect(prefixContains(prefix('::/0'), ip('10.0.0.1'))).toBe(false);
    expect(prefixContains(prefix('10.0.0.0/8'), ip('::ffff:10.0.0.1'))).toBe(false);
    expect(prefixContains(hostPrefix(ip('10.0.0.1')), ip('10.0.0.1'))).toBe(true);
  });
});

describe('toIpv6Bytes', () => {
  it('maps IPv4 into ::ffff:0:0/96 and keeps IPv6', () => {
    expect(toIpv6Bytes(ip('10.0.0.1')).toString('hex')).toBe('00000000000000000000ffff0a000001');
    expect(toIpv6Bytes(ip('fd00::1')).toString('hex')).toBe('fd000000000000000000000000000001');
  });
});
