#!/usr/bin/env node
/**
 * meshauthd: the per-node daemon. Parses flags, loads and validates the configuration, starts the
 * daemon, and shuts it down gracefully on SIGTERM/SIGINT (BPF maps stay pinned, enforcement
 * continues). Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or usage. The
 * stderr heading follows the exit code: "invalid configuration:" for every ConfigError (exit 2),
 * whether the loader found it or the start (inventory, policy, files, attach points, listen
 * ports); "failed to start:" for any other start failure (exit 1).
 */
import { ConfigError, loadConfig, type DaemonConfig } from '../config/index.js';
import { Daemon } from '../daemon/index.js';
import { MeshauthError } from '../errors.js';
import { createLogger } from '../log.js';
import { USAGE_EXIT, usageHint } from '../usage.js';
import { buildDaemonProgram } from './program.js';

/**
 * A configuration the operator has to change (found while loading it or while starting): the
 * heading, one line per problem and the --help hint on stderr; returns the exit status (2).
 */
function invalidConfiguration(err: ConfigError, program: ReturnType<typeof buildDaemonProgram>): number {
  process.stderr.write(`meshauthd: invalid configuration:\n${err.message}\n${usageHint(program)}\n`);
  return USAGE_EXIT;
}

async function main(argv: string[]): Promise<number> {
  const program = buildDaemonProgram();
  try {
    program.parse(argv);
  } catch (err) {
    // --help and --version exit 0; any other commander error is a usage error
    const code = (err as { exitCode?: number }).exitCode;
    return code === 0 ? 0 : USAGE_EXIT;
  }
  const opts = program.opts<Record<string, string | boolean | undefined>>();
  const { config: file, ...overrides } = opts;
  let config: DaemonConfig;
  try {
    config = loadConfig({
      file: typeof file === 'string' ? file : process.env['MESHAUTH_CONFIG'],
      argvOverrides: overrides,
      env: process.env,
    });
  } catch (err) {
    if (err instanceof ConfigError) return invalidConfiguration(err, program);
    throw err;
  }
  const logger = createLogger({ level: config.log.level, name: 'meshauthd' });
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, logger);
  } catch (err) {
    // printed once, on stderr: a log line as well would show it twice on a terminal and in
    // `kubectl logs`; the log keeps the event and its code, and the stack of an unexpected error
    const e = err as Error & { code?: string };
    logger.fatal(
      { event: 'daemon_start_failed', code: e.code, ...(err instanceof MeshauthError ? {} : { err }) },
      'meshauthd failed to start (the reason is on stderr)',
    );
    if (err instanceof ConfigError) return invalidConfiguration(err, program);
    process.stderr.write(`meshauthd: failed to start: ${e.message}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'signal_received', signal: sig }, `received ${sig}`);
      const watchdog = setTimeout(() => {
        logger.error(
          { event: 'daemon_stop_timeout', timeout_ms: SHUTDOWN_TIMEOUT_MS },
          'shutdown took too long; exiting',
        );
        resolve(1);
      }, SHUTDOWN_TIMEOUT_MS);
      watchdog.unref();
      daemon.close().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ event: 'daemon_stop_failed', err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** Longest a graceful shutdown may take before the process exits anyway. */
const SHUTDOWN_TIMEOUT_MS = 15_000;

main(process.argv).then(
  (code) => {
    process.exitCode = code;
    // Give pino a moment to flush, then exit even if a handle lingers.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (err: unknown) => {
    const e = err as Error;
    process.stderr.write(
      `meshauthd: ${e instanceof MeshauthError ? `${e.code}: ` : ''}${e.stack ?? e.message}\n`,
    );
    process.exit(1);
  },
);
