import { describe, expect, it } from 'vitest';
import { HandshakeError } from '../../../../src/auth/handshake/errors.js';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  MAX_FRAME_BYTES,
} from '../../../../src/auth/handshake/frame.js';

function header(length: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(length >>> 0, 0);
  return b;
}

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HandshakeError);
    return (err as HandshakeError).reason;
  }
  return undefined;
}

describe('frame codec', () => {
  it('encodes a u32 big-endian length followed by the JSON body', () => {
    const f = encodeFrame({ a: 1 });
    expect(f.readUInt32BE(0)).toBe(7);
    expect(f.subarray(FRAME_HEADER_BYTES).toString()).toBe('{"a":1}');
  });

  it('round-trips several frames in one chunk', () => {
    const d = new FrameDecoder();
    const both = Buffer.concat([encodeFrame({ n: 1 }), encodeFrame({ n: 2 })]);
    expect(d.push(both)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(d.buffered).toBe(0);
  });

  it('reassembles a frame delivered one byte at a time, header split included', () => {
    const d = new FrameDecoder();
    const f = encodeFrame({ hello: 'world', list: [1, 2, 3] });
    const got: unknown[] = [];
    for (let i = 0; i < f.length; i++) {
      const out = d.push(f.subarray(i, i + 1));
      if (i < f.length - 1) expect(out).toEqual([]);
      got.push(...out);
    }
    expect(got).toEqual([{ hello: 'world', list: [1, 2, 3] }]);
  });

  it('keeps the start of the next frame buffered', () => {
    const d = new FrameDecoder();
    const a = encodeFrame({ n: 1 });
    const b = encodeFrame({ n: 2 });
    expect(d.push(Buffer.concat([a, b.subarray(0, 3)]))).toEqual([{ n: 1 }]);
    expect(d.buffered).toBe(3);
    expect(d.push(b.subarray(3))).toEqual([{ n: 2 }]);
  });

  it('accepts a body of exactly the limit and refuses one byte more as soon as the header arrives', () => {
    const limit = 64;
    const ok = new FrameDecoder(limit);
    const body = Buffer.from(`"${'x'.repeat(limit - 2)}"`);
    expect(ok.push(Buffer.concat([header(limit), body]))).toEqual(['x'.repeat(limit - 2)]);

    const tooBig = new FrameDecoder(limit);
    // Only the header: the decoder must refuse before buffering any body.
    expect(reasonOf(() => tooBig.push(header(limit + 1)))).toBe('protocol-error');
    expect(tooBig.buffered).toBe(0);
  });

  it('refuses an announced 4 GiB frame without buffering', () => {
    const d = new FrameDecoder();
    expect(reasonOf(() => d.push(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7b])))).toBe('protocol-error');
    expect(d.buffered).toBe(0);
  });

  it('refuses an empty frame', () => {
    expect(reasonOf(() => new FrameDecoder().push(header(0)))).toBe('protocol-error');
  });

  it('refuses a body that is not JSON or not UTF-8', () => {
    expect(reasonOf(() => new FrameDecoder().push(Buffer.concat([header(3), Buffer.from('{a:')])))).toBe(
      'protocol-error',
    );
    expect(
      reasonOf(() => new FrameDecoder().push(Buffer.concat([header(3), Buffer.from([0x22, 0xff, 0x22])]))),
    ).toBe('protocol-error');
  });

  it('is unusable after a failure', () => {
    const d = new FrameDecoder();
    expect(reasonOf(() => d.push(header(0)))).toBe('protocol-error');
    expect(reasonOf(() => d.push(encodeFrame({ ok: true })))).toBe('protocol-error');
  });

  it('refuses to encode more than the limit, and to be built with a limit above 16 KiB', () => {
    expect(reasonOf(() => encodeFrame({ s: 'x'.repeat(MAX_FRAME_BYTES) }))).toBe('protocol-error');
    expect(() => new FrameDecoder(MAX_FRAME_BYTES + 1)).toThrow(RangeError);
  });
});
