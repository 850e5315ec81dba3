import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  isMeshauthSni,
  sniForSpiffeId,
  sniHashFromServerName,
  sniHashOf,
} from '../../../../src/tls/index.js';

describe('SNI encoding', () => {
  it('is the hex of the first 16 bytes of sha256(id) under .id.meshauth.invalid', () => {
    const id = 'spiffe://demo.local/ns/demo/sa/web';
    const hex = createHash('sha256').update(id).digest('hex').slice(0, 32);
    expect(sniForSpiffeId(id)).toBe(`${hex}.id.meshauth.invalid`);
    expect(sniHashOf(id)).toBe(hex);
  });

  it('has a fixed length whatever the id, and the label fits in 63 characters', () => {
    const long = `spiffe://demo.local/${'x'.repeat(2000)}`;
    const a = sniForSpiffeId(long);
    const b = sniForSpiffeId('spiffe://a/b');
    expect(a.length).toBe(b.length);
    expect(a.split('.')[0]!.length).toBe(32);
  });

  it('differs for different ids', () => {
    expect(sniForSpiffeId('spiffe://demo.local/a')).not.toBe(sniForSpiffeId('spiffe://demo.local/b'));
  });

  it('recognises only meshauth names', () => {
    const name = sniForSpiffeId('spiffe://demo.local/a');
    expect(isMeshauthSni(name)).toBe(true);
    expect(isMeshauthSni(name.toUpperCase())).toBe(true);
    expect(sniHashFromServerName(name.toUpperCase())).toBe(sniHashOf('spiffe://demo.local/a'));
    for (const bad of [
      'example.com',
      `${'0'.repeat(31)}.id.meshauth.invalid`,
      `${'0'.repeat(33)}.id.meshauth.invalid`,
      `${'g'.repeat(32)}.id.meshauth.invalid`,
      `x.${name}`,
      `${name}.evil`,
      '',
    ]) {
      expect(isMeshauthSni(bad)).toBe(false);
      expect(sniHashFromServerName(bad)).toBeUndefined();
    }
  });
});
