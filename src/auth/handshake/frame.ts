import { protocolError } from './errors.js';

/** Bytes of the big-endian u32 length that precedes every frame body. */
export const FRAME_HEADER_BYTES = 4;

/** Largest frame body the protocol allows (16 KiB). */
export const MAX_FRAME_BYTES = 16 * 1024;

/** Serialize a message: u32 big-endian length, then the UTF-8 JSON body. */
export function encodeFrame(message: unknown, maxFrameBytes: number = MAX_FRAME_BYTES): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  if (body.length > maxFrameBytes) {
    throw protocolError(`encode frame: body of ${body.length} bytes exceeds the ${maxFrameBytes}-byte limit`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Incremental decoder of length-prefixed JSON frames. Memory is bounded by
 * FRAME_HEADER_BYTES + maxFrameBytes: an announced length above the limit is refused as soon as
 * the header is complete, before any of the body is buffered.
 * Every problem throws a HandshakeError with reason `protocol-error`; after that the decoder is
 * unusable (the connection is to be closed).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private failed = false;

  constructor(private readonly maxFrameBytes: number = MAX_FRAME_BYTES) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > MAX_FRAME_BYTES) {
      throw new RangeError(`frame decoder: maxFrameBytes must be an integer in 1..${MAX_FRAME_BYTES}`);
    }
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.size;
  }

  /** Feed bytes; returns the parsed JSON values of every frame completed by them. */
  push(chunk: Buffer): unknown[] {
    if (this.failed) throw protocolError('decode frame: decoder already failed');
    if (chunk.length === 0) return [];
    this.chunks.push(chunk);
    this.size += chunk.length;
    const out: unknown[] = [];
    try {
      for (;;) {
        if (this.size < FRAME_HEADER_BYTES) break;
        const length = this.peekLength();
        if (length === 0) throw protocolError('decode frame: empty frame');
        if (length > this.maxFrameBytes) {
          throw protocolError(
            `decode frame: announced length ${length} exceeds the ${this.maxFrameBytes}-byte limit`,
            {
              length,
            },
          );
        }
        if (this.size < FRAME_HEADER_BYTES + length) break;
        const all = this.take(FRAME_HEADER_BYTES + length);
        out.push(parseBody(all.subarray(FRAME_HEADER_BYTES)));
      }
    } catch (err) {
      this.failed = true;
      this.chunks = [];
      this.size = 0;
      throw err;
    }
    return out;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= FRAME_HEADER_BYTES) return first.readUInt32BE(0);
    this.chunks = [Buffer.concat(this.chunks, this.size)];
    return this.chunks[0]!.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    const head = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
    return head;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseBody(body: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw protocolError('decode frame: body is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw protocolError(`decode frame: body is not JSON (${(err as Error).message})`);
  }
}
