import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Component name, logged as `component`. */
  name?: string;
  /** Where the JSON lines go; default stdout. */
  destination?: DestinationStream;
}

/**
 * JSON logs on stdout, one object per line. Stable field names used across the project:
 * component, event, local_id, remote_id, node, peer, reason, err, duration_ms.
 *
 * Each field appears once per line. pino appends a child logger's bindings and a call's fields
 * after the parent's, so `logger.child({ component: 'datapath' })` under the daemon's
 * `component: 'meshauthd'` would otherwise print `component` twice; JSON readers disagree on
 * which one counts. Here the innermost value wins: the child's binding over the parent's, a call's
 * field over both.
 */
export function createLogger(opts: LogOptions = {}): Logger {
  const options = {
    level: opts.level ?? process.env['MESHAUTH_LOG_LEVEL'] ?? 'info',
    base: { component: opts.name ?? 'meshauth' },
    timestamp: pino.stdTimeFunctions.isoTime,
    hooks: { streamWrite: oneValuePerKey },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

let silent: Logger | undefined;

/**
 * A logger that discards everything (tests, and the default of components given none). One shared
 * instance: each pino instance opens its own stdout stream and registers it for flushing at exit,
 * about 1.4 KiB that is never freed, which a caller creating one per object would leak (a 7-minute
 * fuzz run of the ring-buffer target grew 66 MiB that way).
 */
export function silentLogger(): Logger {
  silent ??= pino({ level: 'silent' });
  return silent;
}

/**
 * Rewrites a JSON log line so that each key occurs once, keeping the position of its first
 * occurrence and the value of its last (what JSON.parse does). A line that is not JSON is passed
 * through.
 */
export function oneValuePerKey(line: string): string {
  const body = line.endsWith('\n') ? line.slice(0, -1) : line;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return line;
  }
  const out = JSON.stringify(parsed);
  return body === line ? out : `${out}\n`;
}
