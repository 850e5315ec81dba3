import { describe, expect, it } from 'vitest';
import { HandshakeError } from '../../../../src/auth/handshake/errors.js';
import {
  failedResult,
  helloMessage,
  okResult,
  parseHello,
  parseResult,
} from '../../../../src/auth/handshake/protocol.js';

const WG = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const hello = {
  v: 1,
  clientNode: 'node-a',
  serverNode: 'node-b.example',
  clientId: 'spiffe://demo.local/ns/a/sa/web',
  serverId: 'spiffe://demo.local/ns/b/sa/db',
  wgPublicKey: WG,
};

function rejects(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HandshakeError);
    expect((err as HandshakeError).reason).toBe('protocol-error');
    return (err as HandshakeError).message;
  }
  throw new Error('expected a protocol-error');
}

describe('hello', () => {
  it('accepts a valid hello, with and without a WireGuard key', () => {
    expect(parseHello(hello)).toEqual(hello);
    const noKey: Record<string, unknown> = { ...hello };
    delete noKey['wgPublicKey'];
    expect(parseHello(noKey)).toEqual(noKey);
  });

  it('builds what it parses, leaving out an undefined key', () => {
    const built = helloMessage({ ...hello, wgPublicKey: undefined });
    expect('wgPublicKey' in built).toBe(false);
    expect(parseHello(JSON.parse(JSON.stringify(built)))).toEqual(built);
  });

  it.each([
    ['not an object', 'hello'],
    ['null', null],
    ['an array', [hello]],
    ['version 2', { ...hello, v: 2 }],
    ['version as string', { ...hello, v: '1' }],
    ['missing clientId', { ...hello, clientId: undefined }],
    ['numeric node', { ...hello, clientNode: 7 }],
    ['empty node', { ...hello, clientNode: '' }],
    ['node with a slash', { ...hello, serverNode: 'a/b' }],
    ['non-SPIFFE id', { ...hello, clientId: 'https://demo.local/x' }],
    ['id with whitespace', { ...hello, serverId: 'spiffe://demo.local/a b' }],
    ['over-long id', { ...hello, clientId: `spiffe://demo.local/${'a'.repeat(2100)}` }],
    ['short WireGuard key', { ...hello, wgPublicKey: 'abc=' }],
    ['WireGuard key as number', { ...hello, wgPublicKey: 5 }],
    ['unknown field', { ...hello, admin: true }],
    [
      '__proto__ field',
      JSON.parse(
        `{"v":1,"clientNode":"a","serverNode":"b","clientId":"spiffe://d/x","serverId":"spiffe://d/y","__proto__":{"x":1}}`,
      ),
    ],
  ])('refuses %s', (_name, value) => {
    expect(rejects(() => parseHello(value))).toMatch(/^parse hello: /);
  });
});

describe('result', () => {
  it('accepts ok and failed results', () => {
    const ok = okResult(1_800_000_000_000, WG);
    expect(parseResult(JSON.parse(JSON.stringify(ok)))).toEqual({
      v: 1,
      ok: true,
      expiresAtMs: 1_800_000_000_000,
      wgPublicKey: WG,
    });
    expect(parseResult(failedResult('svid-untrusted'))).toEqual({
      v: 1,
      ok: false,
      reason: 'svid-untrusted',
      expiresAtMs: 0,
    });
    expect('wgPublicKey' in okResult(5, undefined)).toBe(false);
  });

  it.each([
    ['ok without expiry', { v: 1, ok: true, expiresAtMs: 0 }],
    ['ok with a reason', { v: 1, ok: true, reason: 'x', expiresAtMs: 5 }],
    ['failure without a reason', { v: 1, ok: false, expiresAtMs: 0 }],
    ['failure with an expiry', { v: 1, ok: false, reason: 'timeout', expiresAtMs: 5 }],
    ['ok as string', { v: 1, ok: 'true', expiresAtMs: 5 }],
    ['fractional expiry', { v: 1, ok: true, expiresAtMs: 5.5 }],
    ['negative expiry', { v: 1, ok: true, expiresAtMs: -1 }],
    ['expiry as string', { v: 1, ok: true, expiresAtMs: '5' }],
    ['reason with spaces', { v: 1, ok: false, reason: 'bad thing', expiresAtMs: 0 }],
    ['unknown field', { v: 1, ok: true, expiresAtMs: 5, extra: 1 }],
    ['missing version', { ok: true, expiresAtMs: 5 }],
  ])('refuses %s', (_name, value) => {
    expect(rejects(() => parseResult(value))).toMatch(/^parse result: /);
  });
});
