import { Command, CommanderError } from 'commander';
import { registerAuditCommands } from './commands/audit.js';
import { registerEntriesCommand } from './commands/entries.js';
import { registerEventsCommand } from './commands/events.js';
import { registerFlushCommand } from './commands/flush.js';
import { registerStatusCommand } from './commands/status.js';
import { makeContext } from './context.js';
import { CliError } from './errors.js';
import type { CliIo } from './io.js';
import { configureUsage, exitStatusHelp, USAGE_EXIT, usageErrorText } from '../usage.js';

export const VERSION = '0.1.0';

/** Hooks for command groups defined elsewhere (svid, dev-ca). */
export type CommandRegistrar = (program: Command) => void;

export function buildProgram(io: CliIo, extra: readonly CommandRegistrar[] = []): Command {
  const program = new Command('meshauth');
  program
    .description(
      'Inspect and operate meshauthd: audit events, auth entries, status, flush, audit verification',
    )
    .version(VERSION)
    .option('--socket <path>', 'daemon API Unix socket (env MESHAUTH_SOCKET; default /run/meshauth/api.sock)')
    .option(
      '--address <host:port>',
      'daemon API TCP listener (mTLS; needs --tls-cert, --tls-key, --tls-bundle)',
    )
    .option(
      '--relay <host:port>',
      'meshauth-relay: the same API for the whole cluster (events name their node; mTLS like --address)',
    )
    .option('--tls-cert <file>', 'client X509-SVID certificate chain (PEM)')
    .option('--tls-key <file>', 'client private key (PEM)')
    .option('--tls-bundle <file>', 'CA bundle (PEM) the daemon certificate must chain to')
    .option('--server-id <spiffe-id>', "expected SPIFFE ID of the daemon's certificate")
    .option('--timeout <duration>', 'deadline for each request (5s, 500ms; a bare number is seconds)', '10')
    .addHelpText(
      'after',
      `
Examples:
  meshauth status
  meshauth events --outcome failure --since 30m
  meshauth events --follow --identity 'spiffe://example.org/ns/prod/*'
  meshauth entries -o json
  meshauth flush --pair spiffe://example.org/ns/a/sa/web,spiffe://example.org/ns/b/sa/db
  meshauth audit verify --db /var/lib/meshauth/audit.db
  meshauth --address node1:4251 --tls-cert me.pem --tls-key me.key --tls-bundle ca.pem status
  meshauth --relay relay:4252 --tls-cert me.pem --tls-key me.key --tls-bundle ca.pem events --outcome failure --since 1h
${exitStatusHelp(
  'success',
  'failed: daemon unreachable or refusing, a file unreadable, or a check found a problem',
  'usage error: unknown command or option, missing or bad option value',
)}`,
    );
  const ctx = makeContext(program, io);
  registerEventsCommand(program, ctx);
  registerEntriesCommand(program, ctx);
  registerStatusCommand(program, ctx);
  registerFlushCommand(program, ctx);
  registerAuditCommands(program, ctx);
  for (const r of extra) r(program);
  // every command shares the output, help layout and usage errors (src/usage.ts)
  return configureUsage(program, io);
}

/**
 * Run the CLI with argv (without the node and script entries) and return the exit status.
 * Nothing here calls process.exit.
 */
export async function run(
  argv: readonly string[],
  io: CliIo,
  extra: readonly CommandRegistrar[] = [],
): Promise<number> {
  const program = buildProgram(io, extra);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    // Commander reports usage errors (missing option, unknown flag) with status 1; the help
    // promises 2 for usage errors and keeps 1 for "checked and found bad".
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_EXIT;
    if (err instanceof CliError) {
      if (err.message)
        io.err(
          err.exitCode === USAGE_EXIT ? usageErrorText(program, err.message) : `meshauth: ${err.message}\n`,
        );
      return err.exitCode;
    }
    io.err(`meshauth: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}
