/** Where the CLI writes; tests pass their own. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
  /** Aborted on SIGINT (ends --follow). */
  signal?: AbortSignal;
  now?: () => number;
  /** Terminal width of `out`, for help; undefined when it is not a terminal. */
  columns?: () => number | undefined;
}

/**
 * The process's stdout and stderr. When the reader of either goes away (EPIPE, e.g.
 * `meshauth --help | head -1`) further writes to it are dropped, `onClosed` runs (main aborts
 * long-running commands such as --follow with it) and the command ends with its own exit status:
 * no stack trace, and an `invalid` verdict keeps its status even when nobody reads the text.
 */
export function processIo(signal?: AbortSignal, onClosed?: () => void): CliIo {
  const open = { out: true, err: true };
  const closeOn = (stream: NodeJS.WriteStream, which: 'out' | 'err') =>
    stream.on('error', () => {
      // A write error on a standard stream cannot be reported on it; stop writing to it.
      if (!open[which]) return;
      open[which] = false;
      onClosed?.();
    });
  closeOn(process.stdout, 'out');
  closeOn(process.stderr, 'err');
  return {
    out: (t) => {
      if (open.out) process.stdout.write(t);
    },
    err: (t) => {
      if (open.err) process.stderr.write(t);
    },
    env: process.env,
    columns: () => (process.stdout.isTTY ? process.stdout.columns : undefined),
    ...(signal ? { signal } : {}),
  };
}
