import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * Largest input file read by default (the CLI's certificate chains, trust bundles and keys; the
 * configuration, policy and inventory files): 16 MiB.
 */
export const MAX_INPUT_FILE_BYTES = 16 * 1024 * 1024;

// O_NONBLOCK: opening a FIFO with no writer returns at once instead of blocking a thread (and
// the process, which then ignores SIGTERM) for ever; the fstat below refuses it. O_NOCTTY: a
// terminal named as a file does not become the controlling terminal.
const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * Why a file is not read: anything but a regular file (directory, FIFO, socket,
 * device such as /dev/zero, which would never end), or one larger than `maxBytes`. Thrown as
 * an Error whose message fileErrorReason passes through.
 */
function refusal(st: Stats, maxBytes: number): Error | undefined {
  if (st.isDirectory()) return Object.assign(new Error('is a directory, not a file'), { code: 'EISDIR' });
  if (!st.isFile()) {
    const kind = st.isFIFO()
      ? 'a FIFO'
      : st.isSocket()
        ? 'a socket'
        : st.isCharacterDevice() || st.isBlockDevice()
          ? 'a device'
          : 'not a file';
    return new Error(`not a regular file (${kind})`);
  }
  if (st.size > maxBytes) return new Error(`larger than ${maxBytes} bytes (${st.size})`);
  return undefined;
}

/**
 * Reads a regular file of at most `maxBytes` (default MAX_INPUT_FILE_BYTES), following symlinks.
 * Rejects with the fs error (ENOENT, EACCES, ...) or a plain Error naming why the file is refused;
 * never blocks on a FIFO and never reads an endless device. A file that grows while it is read is
 * cut at maxBytes + 1 and refused.
 */
export async function readInputFile(path: string, maxBytes = MAX_INPUT_FILE_BYTES): Promise<Buffer> {
  const fh = await open(path, FLAGS);
  try {
    const bad = refusal(await fh.stat(), maxBytes);
    if (bad) throw bad;
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
    }
    return Buffer.from(buf.subarray(0, n));
  } finally {
    await fh.close();
  }
}

/** readInputFile, synchronously (the same refusals). */
export function readInputFileSync(path: string, maxBytes = MAX_INPUT_FILE_BYTES): Buffer {
  const fd = openSync(path, FLAGS);
  try {
    const bad = refusal(fstatSync(fd), maxBytes);
    if (bad) throw bad;
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (;;) {
      const bytesRead = readSync(fd, buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
    }
    return Buffer.from(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}
