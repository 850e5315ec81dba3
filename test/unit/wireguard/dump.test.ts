import { describe, expect, it } from 'vitest';
import { parseWgDump, WireguardError } from '../../../src/wireguard/index.js';

const PRIV = '6FucOfepPPpkoN0jiH3v9vYmM70j6tFgO7qL58z3flI=';
const PUB = 'QPqL37X5dKsf1hiWqNZftSPyJId07bHjOvCnm3bDk0g=';
const P1 = 'iKvl7u86ADqfbuWWzVbMg6xty/P12AHHmG4qbKe4bXo=';
const P2 = '6E2J7i+xCiUo8qreOUfLj4uS4lZYYuL6PIBJF+HY02o=';

describe('parseWgDump', () => {
  it('parses interface and peers', () => {
    const text = [
      `${PRIV}\t${PUB}\t51820\toff`,
      `${P1}\t(none)\t192.168.77.2:51820\t10.77.2.0/24,fd00:77:2::/64\t1700000000\t1234\t5678\t25`,
      `${P2}\t(none)\t(none)\t(none)\t0\t0\t0\toff`,
      '',
    ].join('\n');
    const st = parseWgDump(text);
    expect(st.interface).toEqual({
      hasPrivateKey: true,
      publicKey: PUB,
      listenPort: 51820,
      fwmark: undefined,
    });
    expect(st.peers).toEqual([
      {
        publicKey: P1,
        hasPresharedKey: false,
        endpoint: '192.168.77.2:51820',
        allowedIPs: ['10.77.2.0/24', 'fd00:77:2::/64'],
        latestHandshakeMs: 1_700_000_000_000,
        rxBytes: 1234,
        txBytes: 5678,
        persistentKeepaliveSec: 25,
      },
      {
        publicKey: P2,
        hasPresharedKey: false,
        endpoint: undefined,
        allowedIPs: [],
        latestHandshakeMs: undefined,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepaliveSec: undefined,
      },
    ]);
    // key material never leaves the parser
    expect(JSON.stringify(st)).not.toContain(PRIV);
  });

  it('parses a fresh interface without key and a hex fwmark, and IPv6 endpoints', () => {
    const st = parseWgDump(
      `(none)\t(none)\t43535\t0x2a\n${P1}\tsecret\t[fd00::2]:51820\t10.0.0.0/8\t0\t1\t2\toff\n`,
    );
    expect(st.interface).toEqual({
      hasPrivateKey: false,
      publicKey: undefined,
      listenPort: 43535,
      fwmark: 42,
    });
    expect(st.peers[0]?.endpoint).toBe('[fd00::2]:51820');
    expect(st.peers[0]?.hasPresharedKey).toBe(true);
  });

  it('rejects malformed output', () => {
    for (const bad of [
      '',
      'a\tb\tc',
      `${PRIV}\t${PUB}\tx\toff`,
      `${PRIV}\t${PUB}\t1\toff\n${P1}\t(none)\t(none)`,
    ]) {
      expect(() => parseWgDump(bad)).toThrow(WireguardError);
    }
    try {
      parseWgDump('');
    } catch (err) {
      expect((err as WireguardError).code).toBe('MESHAUTH_ERR_WIREGUARD_DUMP_PARSE');
    }
  });
});
