import { constants } from 'node:os';
import { MeshauthError } from '../errors.js';

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [value, name] as [number, string]),
);

/** "ENOENT" for 2; "errno 999" when unknown. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/** A failed libbpf / kernel operation. `errno` is positive (0 when not applicable). */
export class DatapathError extends MeshauthError {
  readonly errno: number;
  readonly op: string;

  constructor(
    op: string,
    errno: number,
    detail?: string,
    code = 'MESHAUTH_ERR_DATAPATH',
    options?: { cause?: unknown },
  ) {
    super(code, `${op}: ${detail ?? errnoName(errno)}`, options);
    this.op = op;
    this.errno = errno;
  }
}

/** Lookup or delete of a key that is not in the map (the kernel's ENOENT). */
export class KeyNotExistError extends DatapathError {
  constructor(op: string) {
    super(op, constants.errno.ENOENT, 'key does not exist', 'MESHAUTH_ERR_DATAPATH_KEY_NOT_EXIST');
  }
}

/** The verifier rejected a program; `verifierLog` holds what libbpf printed while loading. */
export class VerifierError extends DatapathError {
  readonly verifierLog: string;

  constructor(op: string, errno: number, verifierLog: string) {
    super(op, errno, `${errnoName(errno)}\n${verifierLog}`, 'MESHAUTH_ERR_DATAPATH_VERIFIER');
    this.verifierLog = verifierLog;
  }
}

/** A pinned map exists but does not match the object's definition (type, sizes, flags). */
export class PinMismatchError extends DatapathError {
  constructor(op: string, errno: number, log: string) {
    super(
      op,
      errno,
      `${errnoName(errno)}: a pinned map does not match the object (remove the pins to recreate)\n${log}`,
      'MESHAUTH_ERR_DATAPATH_PIN_MISMATCH',
    );
  }
}

/** A buffer or codec of the wrong size was used with a map. */
export class SizeMismatchError extends DatapathError {
  constructor(op: string, what: string, expected: number, actual: number) {
    super(op, 0, `${what} is ${actual} bytes, map expects ${expected}`, 'MESHAUTH_ERR_DATAPATH_SIZE');
  }
}

/** The bpffs pin directory is not usable. */
export class BpffsError extends DatapathError {
  constructor(op: string, detail: string, errno = 0) {
    super(op, errno, detail, 'MESHAUTH_ERR_DATAPATH_BPFFS');
  }
}

/** Bad argument to the datapath API (unknown interface, malformed CIDR, ...). */
export class DatapathInputError extends DatapathError {
  constructor(op: string, detail: string) {
    super(op, 0, detail, 'MESHAUTH_ERR_DATAPATH_INPUT');
  }
}
