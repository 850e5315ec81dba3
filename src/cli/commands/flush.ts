import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';

export function registerFlushCommand(program: Command, ctx: CliContext): void {
  program
    .command('flush')
    .description('Remove auth entries so the next packet of the pair forces a new handshake')
    .option('--pair <local>,<remote>', 'the pair: local and remote SPIFFE IDs separated by a comma')
    .option('--node <name>', 'with --pair: only the entry towards this remote node')
    .option('--all', 'remove every entry on this node')
    .addHelpText(
      'after',
      `
Examples:
  meshauth flush --pair spiffe://example.org/ns/a/sa/web,spiffe://example.org/ns/b/sa/db
  meshauth flush --all`,
    )
    .action(async (o: { pair?: string; node?: string; all?: boolean }) => {
      if (Boolean(o.pair) === Boolean(o.all))
        throw new CliError('flush: give exactly one of --pair <local>,<remote> or --all', 2);
      let req: { all: true } | { localId: string; remoteId: string; node?: string };
      if (o.all) {
        if (o.node) throw new CliError('flush: --node goes with --pair, not --all', 2);
        req = { all: true };
      } else {
        const parts = o.pair!.split(',');
        if (parts.length !== 2 || !parts[0] || !parts[1]) {
          throw new CliError(
            `flush: --pair must be <local-spiffe-id>,<remote-spiffe-id>, got "${o.pair}"`,
            2,
          );
        }
        req = { localId: parts[0].trim(), remoteId: parts[1].trim(), ...(o.node ? { node: o.node } : {}) };
      }
      await ctx.withClient(async (client) => {
        const removed = await client.flush(req);
        ctx.io.out(`removed ${removed} ${removed === 1 ? 'entry' : 'entries'}\n`);
      });
    });
}
