/**
 * Base error for meshauth. Every subclass has a stable `code` (MESHAUTH_ERR_*) that callers,
 * logs and audit events may rely on; messages begin with the operation that failed.
 */
export class MeshauthError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Using an object after close() / destroy(). */
export class ClosedError extends MeshauthError {
  constructor(what: string) {
    super('MESHAUTH_ERR_CLOSED', `${what}: already closed`);
  }
}

/** Wrap anything thrown into an Error without losing it. */
export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
