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

/**
 * The log form of an error. A MeshauthError is a failure the code foresaw and explained in its
 * message and code, so it is logged without a stack trace: a copy of the same class and fields whose
 * `stack` is its one-line summary and whose causes are listed as messages (`causes`). Anything else
 * is unexpected and returned as it is, so its stack trace is logged.
 */
export function errorForLog(err: unknown): unknown {
  if (!(err instanceof MeshauthError)) return err;
  const causes: string[] = [];
  let c: unknown = err.cause;
  while (c !== undefined && causes.length < 5) {
    causes.push(c instanceof Error ? c.message : String(c));
    c = c instanceof Error ? c.cause : undefined;
  }
  const brief = Object.create(Object.getPrototypeOf(err) as object) as MeshauthError & { causes?: string[] };
  Object.assign(brief, err); // own enumerable fields (code, name, ...); not the cause
  Object.defineProperty(brief, 'message', { value: err.message, writable: true, configurable: true });
  Object.defineProperty(brief, 'stack', {
    value: `${err.name}: ${err.message}`,
    writable: true,
    configurable: true,
  });
  if (causes.length > 0) brief.causes = causes;
  return brief;
}
