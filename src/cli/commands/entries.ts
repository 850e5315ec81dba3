import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { formatTtl, isoTime, parseOutput, renderTable } from '../format.js';

export function registerEntriesCommand(program: Command, ctx: CliContext): void {
  program
    .command('entries')
    .description('List live authentication entries (pairs allowed to talk) with their expiry')
    .option('-o, --output <format>', 'table or json (one object per line)', 'table')
    .addHelpText('after', '\nExamples:\n  meshauth entries\n  meshauth entries -o json | jq .remoteId')
    .action(async (o: { output: string }) => {
      const format = parseOutput(o.output);
      await ctx.withClient(async (client) => {
        const entries = await client.listEntries();
        const now = ctx.now();
        if (format === 'json') {
          for (const e of entries)
            ctx.io.out(JSON.stringify({ ...e, expires: isoTime(e.expiresAtMs) }) + '\n');
          return;
        }
        // no heading over nothing
        if (entries.length === 0) {
          ctx.io.err('meshauth: no auth entries\n');
          return;
        }
        ctx.io.out(
          renderTable(
            ['LOCAL', 'REMOTE', 'NODE', 'EXPIRES', 'TTL'],
            entries.map((e) => [
              e.localId,
              e.remoteId,
              e.remoteNode || '(local)',
              isoTime(e.expiresAtMs),
              formatTtl(e.expiresAtMs - now),
            ]),
          ),
        );
      });
    });
}
