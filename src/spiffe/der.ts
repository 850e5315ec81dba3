/**
 * A minimal DER reader: just enough to walk an X.509 certificate to its extensions. Every read is
 * bounds-checked and throws DerError on malformed input.
 */
export class DerError extends Error {}

export interface Tlv {
  tag: number;
  /** Offset of the value within the buffer. */
  start: number;
  /** Offset just past the value. */
  end: number;
  /** Offset just past the value (same as end); the next TLV starts here. */
  next: number;
}

/** Read one TLV at `offset`, ending no later than `limit`. */
export function readTlv(buf: Uint8Array, offset: number, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let len = buf[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length encoding');
    if (p + n > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    p += n;
  }
  const end = p + len;
  if (end > limit) throw new DerError('value runs past its container');
  return { tag, start: p, end, next: end };
}

/** The children of a constructed TLV. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let p = parent.start;
  while (p < parent.end) {
    const t = readTlv(buf, p, parent.end);
    out.push(t);
    p = t.next;
  }
  return out;
}

/** Dotted form of an OBJECT IDENTIFIER value. */
export function oidString(buf: Uint8Array, t: Tlv): string {
  if (t.tag !== 0x06 || t.end <= t.start) throw new DerError('expected an OBJECT IDENTIFIER');
  const parts: number[] = [];
  let v = 0;
  for (let i = t.start; i < t.end; i++) {
    const b = buf[i]!;
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      if (parts.length === 0) {
        const first = v < 80 ? Math.floor(v / 40) : 2;
        parts.push(first, v - first * 40);
      } else {
        parts.push(v);
      }
      v = 0;
    }
  }
  return parts.join('.');
}

/** Split concatenated DER structures (e.g. a DER bundle) into separate buffers. */
export function splitDer(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p < buf.length) {
    const t = readTlv(buf, p);
    if (t.tag !== 0x30) throw new DerError(`expected a SEQUENCE at offset ${p}`);
    out.push(buf.subarray(p, t.next));
    p = t.next;
  }
  return out;
}
