/** Where the CLI writes; tests pass their own. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
  /** Aborted on SIGINT (ends --follow). */
  signal?: AbortSignal;
  now?: () => number;
}

export function processIo(signal?: AbortSignal): CliIo {
  return {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    ...(signal ? { signal } : {}),
  };
}
