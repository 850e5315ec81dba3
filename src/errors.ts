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

/**
 * Why a file could not be read, without the path: Node's message repeats it ("ENOENT: no such file
 * or directory, open '/etc/x'") after the caller has already named the file and the option it came
 * from. "no such file", "permission denied", "is a directory", ...; other errors as they are.
 */
export function fileErrorReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  if (e?.code === 'ENOENT') return 'no such file';
  if (e?.code === 'EACCES' || e?.code === 'EPERM') return 'permission denied';
  if (e?.code === 'EISDIR') return 'is a directory, not a file';
  const m = e?.code ? /^[A-Z0-9_]+: (.*?)(?:, \w+ '.*')?$/s.exec(e.message ?? '') : null;
  return m?.[1] ?? (e instanceof Error ? e.message : String(err));
}

/** What a failed connect(2) errno means, for messages. */
const CONNECT_ERRNO: Readonly<Record<string, string>> = {
  ENOENT: 'no such socket',
  ECONNREFUSED: 'connection refused',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOTSOCK: 'not a socket',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
};

/**
 * gRPC status details made readable. grpc-js reports a channel that never connected as
 * "No connection established. Last error: Error: connect ENOENT /run/x.sock. Resolution note: "
 * (the note is empty unless name resolution had something to say) and a target that resolved to
 * nothing as "No addresses resolved. Resolution note: ...". Those become the last error alone,
 * with a failed connect(2) said in words ("no such socket (connect ENOENT)"), and the
 * resolution note only when it has text. "Deadline exceeded after 1.002s,Waiting for LB pick" (a peer
 * that accepted the connection but never answered, or answered too late) becomes "no answer within
 * 1 s (deadline exceeded)": grpc-js measures the time itself, and its timer may fire a few
 * milliseconds before or after the deadline asked for (0.498 s for --timeout 0.5), so it is rounded
 * to 0.1 s. Any other details are returned as they are.
 */
export function grpcDetailsReason(details: string): string {
  const noConn = /^No connection established\. Last error: (.*?)\.? Resolution note: ?(.*)$/s.exec(details);
  if (noConn) {
    const last = noConn[1]!.replace(/^(?:[A-Za-z]*Error: )+/, '');
    const connect = /^(?:connect|getaddrinfo) ([A-Z_]+) (.+)$/.exec(last);
    const words = connect ? CONNECT_ERRNO[connect[1]!] : undefined;
    // the caller names the socket or address it dialled: the reason does not repeat it
    const reason = connect && words ? `${words} (connect ${connect[1]})` : last;
    const note = noConn[2]!.trim();
    return note ? `${reason}; ${note}` : reason;
  }
  const noAddr = /^No addresses resolved\. Resolution note: ?(.*)$/s.exec(details);
  if (noAddr)
    return noAddr[1]!.trim() ? `no addresses resolved: ${noAddr[1]!.trim()}` : 'no addresses resolved';
  const deadline = /^Deadline exceeded after ([0-9.]+)s\b/.exec(details);
  if (deadline) {
    const s = Math.round(Number(deadline[1]) * 10) / 10;
    return `no answer within ${s} s (deadline exceeded)`;
  }
  return details;
}
