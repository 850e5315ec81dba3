import { execFile } from 'node:child_process';
import { WireguardError } from './errors.js';

/** What a finished command printed. */
export interface ExecResult {
  /** Exit status; null when killed by a signal or timed out. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs one external command and resolves with its result whatever the exit status (rejects only
 * when it could not be started). The manager runs every `ip`, `wg` and `wireguard-go` command
 * through one of these, so a namespace wrapper or a recording fake can stand in.
 */
export type Exec = (file: string, args: readonly string[]) => Promise<ExecResult>;

export interface ExecOptions {
  /** Run every command inside this named network namespace (`ip netns exec <netns> ...`). */
  netns?: string;
  timeoutMs?: number;
  /** Extra environment for the commands (merged over process.env). */
  env?: Record<string, string>;
}

/** The real executor: child processes, optionally wrapped in `ip netns exec`. */
export function createExec(opts: ExecOptions = {}): Exec {
  const timeout = opts.timeoutMs ?? 15_000;
  const env = opts.env === undefined ? process.env : { ...process.env, ...opts.env };
  return (file, args) => {
    const [cmd, argv] =
      opts.netns === undefined ? [file, [...args]] : ['ip', ['netns', 'exec', opts.netns, file, ...args]];
    return new Promise((resolve, reject) => {
      execFile(
        cmd,
        argv,
        { encoding: 'utf8', timeout, env, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err === null) {
            resolve({ code: 0, stdout, stderr });
            return;
          }
          const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean };
          if (typeof e.code === 'string') {
            // ENOENT and friends: the command could not be started at all
            reject(
              new WireguardError(
                'MESHAUTH_ERR_WIREGUARD_COMMAND',
                `run ${formatCommand(file, args)}: ${e.message}`,
                {
                  command: [file, ...args],
                  cause: err,
                },
              ),
            );
            return;
          }
          resolve({ code: typeof e.code === 'number' ? e.code : null, stdout, stderr });
        },
      );
    });
  };
}

/** Runs a command and returns stdout; any failure becomes a WireguardError naming the command and its output. */
export async function runChecked(
  exec: Exec,
  operation: string,
  file: string,
  args: readonly string[],
): Promise<string> {
  const res = await exec(file, args);
  if (res.code !== 0) throw commandError(operation, file, args, res);
  return res.stdout;
}

export function commandError(
  operation: string,
  file: string,
  args: readonly string[],
  res: ExecResult,
): WireguardError {
  const output = `${res.stderr}${res.stdout}`.trim();
  const status = res.code === null ? 'killed or timed out' : `exit ${res.code}`;
  return new WireguardError(
    'MESHAUTH_ERR_WIREGUARD_COMMAND',
    `${operation}: \`${formatCommand(file, args)}\` failed (${status})${output === '' ? '' : `: ${output}`}`,
    { command: [file, ...args], output, exitCode: res.code },
  );
}

export function formatCommand(file: string, args: readonly string[]): string {
  return [file, ...args]
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(' ');
}
