/**
 * Fuzz target: the handshake frame decoder and the hello/result messages (the bytes a peer sends
 * inside TLS). Invariants: only protocol-error HandshakeErrors; the decoder never buffers more than
 * one header plus the frame limit; chunk boundaries never change what is decoded (checked against a
 * whole-stream reference split); an accepted message round-trips and obeys the schema's rules.
 */
import { describe, expect, it } from 'vitest';
import {
  FRAME_HEADER_BYTES,
  FrameDecoder,
  HandshakeError,
  MAX_FRAME_BYTES,
  parseHello,
  parseResult,
} from '../../src/auth/handshake/index.js';
import { fc, fuzzSync, mutatedBytes, seeds, timeoutFor } from './harness.js';

const TARGET = 'handshake-frames';
const CI_SECONDS = 3;

function expectProtocolError(err: unknown): void {
  expect(err).toBeInstanceOf(HandshakeError);
  expect((err as HandshakeError).code).toBe('MESHAUTH_ERR_HANDSHAKE');
  expect((err as HandshakeError).reason).toBe('protocol-error');
}

/** Reference split of a whole stream: the frames it holds, then whether it ended in an error. */
function referenceSplit(stream: Buffer, max: number): { bodies: Buffer[]; fails: boolean } {
  const bodies: Buffer[] = [];
  let p = 0;
  while (stream.length - p >= FRAME_HEADER_BYTES) {
    const len = stream.readUInt32BE(p);
    if (len === 0 || len > max) return { bodies, fails: true };
    if (stream.length - p - FRAME_HEADER_BYTES < len) break;
    bodies.push(stream.subarray(p + FRAME_HEADER_BYTES, p + FRAME_HEADER_BYTES + len));
    p += FRAME_HEADER_BYTES + len;
  }
  return { bodies, fails: false };
}

function frameOf(body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length);
  return Buffer.concat([h, body]);
}

const jsonish = fc.oneof(
  fc.jsonValue(),
  fc.record(
    {
      v: fc.oneof(fc.constant(2), fc.integer(), fc.string()),
      ok: fc.oneof(fc.boolean(), fc.constant('true')),
      reason: fc.oneof(fc.constantFrom('timeout', 'svid-expired', 'Bad Reason', ''), fc.string()),
      expiresAtMs: fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -1, 8.64e15, 8.64e15 + 1, 1e308)),
      clientNode: fc.oneof(fc.constantFrom('node-a', '-x', 'a'.repeat(254)), fc.string()),
      serverNode: fc.oneof(fc.constant('node-b'), fc.string()),
      clientId: fc.oneof(fc.constant('spiffe://demo.local/ns/a/sa/web'), fc.string(), fc.webUrl()),
      serverId: fc.oneof(fc.constant('spiffe://demo.local/ns/b/sa/db'), fc.string()),
      wgPublicKey: fc.oneof(fc.constant(Buffer.alloc(32, 7).toString('base64')), fc.base64String()),
      wgProof: fc.base64String(),
      extra: fc.anything(),
    },
    { requiredKeys: [] },
  ),
);

const body = fc.oneof(
  { weight: 3, arbitrary: jsonish.map((v) => Buffer.from(JSON.stringify(v) ?? 'null', 'utf8')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary' }).map((s) => Buffer.from(s, 'utf8')) },
);

/** A stream: frames (some with lying headers), garbage, or a mutated seed. */
const stream = fc.oneof(
  fc
    .array(
      fc.oneof(
        { weight: 6, arbitrary: body.map(frameOf) },
        {
          weight: 1,
          arbitrary: fc
            .constantFrom(0, 1, MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1, 0x7fffffff, 0xffffffff)
            .map((n) => {
              const h = Buffer.alloc(4);
              h.writeUInt32BE(n);
              return h;
            }),
        },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 16 }).map((u) => Buffer.from(u)) },
      ),
      { maxLength: 5 },
    )
    .map((parts) => Buffer.concat(parts)),
  mutatedBytes(seeds(TARGET)),
);

/** Cut points of a stream into chunks (1-byte trickles included). */
const chunking = fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 40 });

function feed(
  dec: FrameDecoder,
  data: Buffer,
  cuts: number[],
  max: number,
): { values: unknown[]; failed: boolean } {
  const values: unknown[] = [];
  let p = 0;
  let i = 0;
  while (p < data.length) {
    const n = cuts[i++ % cuts.length]!;
    const chunk = data.subarray(p, p + n);
    p += n;
    try {
      values.push(...dec.push(chunk));
    } catch (err) {
      expectProtocolError(err);
      expect(dec.buffered).toBe(0);
      // A failed decoder stays failed.
      try {
        dec.push(Buffer.from([1]));
        throw new Error('a failed decoder accepted more bytes', { cause: err });
      } catch (again) {
        expectProtocolError(again);
      }
      return { values, failed: true };
    }
    expect(dec.buffered).toBeLessThanOrEqual(FRAME_HEADER_BYTES + max);
  }
  return { values, failed: false };
}

function checkMessage(value: unknown): void {
  for (const parse of [parseHello, parseResult] as const) {
    let msg: unknown;
    try {
      msg = parse(value);
    } catch (err) {
      expectProtocolError(err);
      continue;
    }
    // Accepted: plain data that survives a JSON round trip unchanged (no prototype tricks, no
    // undefined, no non-finite numbers), and the result's ok/reason/expiry rule holds.
    expect(Object.getPrototypeOf(msg)).toBe(Object.prototype);
    expect(parse(JSON.parse(JSON.stringify(msg)))).toEqual(msg);
    const m = msg as Record<string, unknown>;
    expect(m['v']).toBe(2);
    if (parse === parseResult) {
      if (m['ok'] === true) expect(m['reason'] === undefined && (m['expiresAtMs'] as number) > 0).toBe(true);
      else expect(typeof m['reason'] === 'string' && m['expiresAtMs'] === 0).toBe(true);
    }
  }
}

describe('fuzz: handshake frames and messages', () => {
  it('seed corpus decodes as recorded', () => {
    const [hello, helloV1, oversized, pollution, resultOk, refused, two] = seeds(TARGET);
    const one = (b: Buffer): unknown => {
      const v = new FrameDecoder().push(b!);
      expect(v).toHaveLength(1);
      return v[0];
    };
    expect(parseHello(one(hello!)).clientId).toBe('spiffe://demo.local/ns/a/sa/web');
    expect(() => parseHello(one(helloV1!))).toThrow(/parse hello: v/);
    expect(() => new FrameDecoder().push(oversized!)).toThrow(/announced length 16385/);
    // "__proto__" in the JSON is an own key, and strict schemas refuse unknown keys.
    expect(() => parseResult(one(pollution!))).toThrow(HandshakeError);
    expect(parseResult(one(resultOk!)).ok).toBe(true);
    expect(parseResult(one(refused!)).reason).toBe('svid-expired');
    expect(new FrameDecoder().push(two!)).toHaveLength(2);
  });

  it(
    'any stream in any chunking: typed errors, bounded buffer, same frames as the reference split',
    () => {
      fuzzSync(
        TARGET,
        CI_SECONDS,
        fc.record({ data: stream, cuts: chunking, max: fc.constantFrom(MAX_FRAME_BYTES, 64, 1) }),
        ({ data, cuts, max }) => {
          const ref = referenceSplit(data, max);
          const got = feed(new FrameDecoder(max), data, cuts, max);
          // Bodies that are not UTF-8 JSON fail the decoder at that frame: compare up to it.
          let expected: unknown[] = [];
          let refFails = ref.fails;
          for (const b of ref.bodies) {
            let v: unknown;
            try {
              v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b));
            } catch {
              refFails = true;
              break;
            }
            expected = [...expected, v];
          }
          expect(got.failed).toBe(refFails);
          // On failure the frames completed before the bad one, in the chunk that failed, are lost
          // with the connection; frames returned from earlier chunks are a prefix of the reference.
          if (got.failed) expect(expected.slice(0, got.values.length)).toEqual(got.values);
          else expect(got.values).toEqual(expected);
          for (const v of got.values) checkMessage(v);
        },
      );
    },
    timeoutFor(CI_SECONDS),
  );
});
