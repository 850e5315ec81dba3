#!/usr/bin/env node
/**
 * meshauthd: the per-node daemon. Parses flags, loads and validates the configuration, starts the
 * daemon, and shuts it down gracefully on SIGTERM/SIGINT (BPF maps stay pinned, enforcement
 * continues). Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or usage.
 */
import { Command, Option } from 'commander';
import { ConfigError, describeOptions, loadConfig, type DaemonConfig } from '../config/index.js';
import { Daemon } from '../daemon/index.js';
import { errorForLog, MeshauthError } from '../errors.js';
import { createLogger } from '../log.js';
import { VERSION } from '../version.js';

function buildProgram(): Command {
  const program = new Command('meshauthd')
    .description(
      'Out-of-band mutual authentication daemon, one per node.\n\n' +
        'Loads the BPF datapath, keeps the auth cache of (local identity, remote identity, remote node),\n' +
        'answers auth-required signals with TLS 1.3 mutual handshakes to the peer node daemon, and\n' +
        'records every decision in the audit trail.\n\n' +
        'Every setting can come from the config file, an environment variable or a flag\n' +
        '(precedence: defaults < file < environment < flags). Durations accept 250ms, 5s, 1h.',
    )
    .version(VERSION, '-V, --version')
    .helpOption('-h, --help', 'Show this help')
    .showHelpAfterError('(run meshauthd --help for the options)')
    .configureHelp({ sortOptions: false, helpWidth: 110 })
    .allowExcessArguments(false);
  for (const o of describeOptions()) {
    const flags =
      o.kind === 'bool' ? `${o.flag} [${o.valueName.replace(/[<>]/g, '')}]` : `${o.flag} ${o.valueName}`;
    const extra = [
      o.path ? `file: ${o.path}` : undefined,
      `env: ${o.env}`,
      o.default !== undefined ? `default: ${o.default}` : undefined,
    ]
      .filter(Boolean)
      .join('; ');
    // No commander defaults: a default here would override the config file.
    program.addOption(new Option(flags, `${o.description} (${extra})`));
  }
  program.addHelpText(
    'after',
    '\nExamples:\n' +
      '  meshauthd --config /etc/meshauth/config.yaml\n' +
      '  MESHAUTH_LOG_LEVEL=debug meshauthd --config config.yaml --handshake-port 4250\n' +
      '\nSignals: SIGTERM/SIGINT stop gracefully (maps stay pinned, programs stay attached).\n',
  );
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    program.parse(argv);
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode;
    return code === 0 ? 0 : 2;
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
    if (err instanceof ConfigError) {
      process.stderr.write(`meshauthd: invalid configuration:\n${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger({ level: config.log.level, name: 'meshauthd' });
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, logger);
  } catch (err) {
    const e = err as Error & { code?: string };
    logger.fatal(
      { event: 'daemon_start_failed', err: errorForLog(err), code: e.code },
      `meshauthd failed to start: ${e.message}`,
    );
    process.stderr.write(`meshauthd: failed to start: ${e.message}\n`);
    return err instanceof ConfigError ? 2 : 1;
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
