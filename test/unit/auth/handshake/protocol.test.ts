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
  v: 2,
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

  it('accepts a WireGuard proof of 32 bytes (base64) and builds what it parses', () => {
    const proof = Buffer.alloc(32, 7).toString('base64');
    expect(parseHello({ ...hello, wgProof: proof })).toEqual({ ...hello, wgProof: proof });
    const r = okResult(5, WG, proof);
    expect(parseResult(JSON.parse(JSON.stringify(r)))).toEqual({
      v: 2,
      ok: true,
      expiresAtMs: 5,
      wgPublicKey: WG,
      wgProof: proof,
    });
    expect('wgProof' in okResult(5, WG)).toBe(false);
  });

  it("a refusal may carry the server node's WireGuard key (so the client can report a key mismatch)", () => {
    expect(parseResult(JSON.parse(JSON.stringify(failedResult('wireguard-key-proof-invalid', WG))))).toEqual({
      v: 2,
      ok: false,
      reason: 'wireguard-key-proof-invalid',
      expiresAtMs: 0,
      wgPublicKey: WG,
    });
    expect('wgPublicKey' in failedResult('timeout')).toBe(false);
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
    ['version 1 (no WireGuard proofs)', { ...hello, v: 1 }],
    ['version 3', { ...hello, v: 3 }],
    ['version as string', { ...hello, v: '2' }],
    ['short WireGuard proof', { ...hello, wgProof: 'abc=' }],
    ['WireGuard proof of 33 bytes', { ...hello, wgProof: Buffer.alloc(33, 1).toString('base64') }],
    ['WireGuard proof as number', { ...hello, wgProof: 5 }],
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
        `{"v":2,"clientNode":"a","serverNode":"b","clientId":"spiffe://d/x","serverId":"spiffe://d/y","__proto__":{"x":1}}`,
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
      v: 2,
      ok: true,
      expiresAtMs: 1_800_000_000_000,
      wgPublicKey: WG,
    });
    expect(parseResult(failedResult('svid-untrusted'))).toEqual({
      v: 2,
      ok: false,
      reason: 'svid-untrusted',
      expiresAtMs: 0,
    });
    expect('wgPublicKey' in okResult(5, undefined)).toBe(false);
  });

  it.each([
    ['ok without expiry', { v: 2, ok: true, expiresAtMs: 0 }],
    ['ok with a reason', { v: 2, ok: true, reason: 'x', expiresAtMs: 5 }],
    ['failure without a reason', { v: 2, ok: false, expiresAtMs: 0 }],
    ['failure with an expiry', { v: 2, ok: false, reason: 'timeout', expiresAtMs: 5 }],
    ['ok as string', { v: 2, ok: 'true', expiresAtMs: 5 }],
    ['fractional expiry', { v: 2, ok: true, expiresAtMs: 5.5 }],
    ['negative expiry', { v: 2, ok: true, expiresAtMs: -1 }],
    ['expiry as string', { v: 2, ok: true, expiresAtMs: '5' }],
    ['reason with spaces', { v: 2, ok: false, reason: 'bad thing', expiresAtMs: 0 }],
    ['unknown field', { v: 2, ok: true, expiresAtMs: 5, extra: 1 }],
    ['missing version', { ok: true, expiresAtMs: 5 }],
  ])('refuses %s', (_name, value) => {
    expect(rejects(() => parseResult(value))).toMatch(/^parse result: /);
  });
});
