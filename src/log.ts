import { pino, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Component name, logged as `component`. */
  name?: string;
}

/**
 * JSON logs on stdout. Stable field names used across the project:
 * component, event, local_id, remote_id, node, peer, reason, err, duration_ms.
 */
export function createLogger(opts: LogOptions = {}): Logger {
  return pino({
    level: opts.level ?? process.env['MESHAUTH_LOG_LEVEL'] ?? 'info',
    base: opts.name ? { component: opts.name } : { component: 'meshauth' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that discards everything (tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
