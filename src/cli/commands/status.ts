import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { formatSpan, formatTtl, isoTime, parseOutput, renderFields, renderSection } from '../format.js';

export function registerStatusCommand(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description('Show daemon status: datapath, identity source, identities, counters, audit trail')
    .option('-o, --output <format>', 'table or json', 'table')
    .action(async (o: { output: string }) => {
      const format = parseOutput(o.output);
      await ctx.withClient(async (client) => {
        const s = await client.status();
        if (format === 'json') {
          ctx.io.out(JSON.stringify(s) + '\n');
          return;
        }
        const now = ctx.now();
        const rows: [string, string][] = [
          ['node', s.node],
          ['version', s.version],
          ['started', `${isoTime(s.startedAtMs)} (up ${formatSpan(now - s.startedAtMs)})`],
          [
            'datapath',
            `${s.datapathAttached ? 'attached' : 'NOT attached'} (${s.datapathMode})${s.datapathDetail ? ` ${s.datapathDetail}` : ''}`,
          ],
          [
            'identity source',
            `${s.identitySource} ${s.identitySourceConnected ? 'connected' : 'NOT connected'}${s.identitySourceDetail ? ` (${s.identitySourceDetail})` : ''}`,
          ],
          ['auth entries', String(s.entries)],
        ];
        if (s.audit) {
          rows.push(
            ['audit db', s.audit.path],
            [
              'audit events',
              `${s.audit.rows} stored, last seq ${s.audit.lastSeq}, ${(s.audit.bytes / 1048576).toFixed(1)} MiB`,
            ],
            ['audit queue', `${s.audit.queueDepth} queued, ${s.audit.dropped} dropped`],
          );
        }
        for (const [k, v] of Object.entries(s.versions).sort()) rows.push([`version ${k}`, v]);
        // a field or section with nothing in it is left out (a peer may leave any of them empty)
        ctx.io.out(renderFields(rows));
        ctx.io.out(
          renderSection(
            ['IDENTITY', 'NOT AFTER', 'EXPIRES IN'],
            s.identities.map((i) => [
              i.spiffeId,
              isoTime(i.notAfterMs),
              i.notAfterMs ? formatTtl(i.notAfterMs - now) : '-',
            ]),
          ),
        );
        const counters = Object.entries(s.counters).sort(([a], [b]) => a.localeCompare(b));
        ctx.io.out(
          renderSection(
            ['COUNTER', 'VALUE'],
            counters.map(([k, v]) => [k, String(v)]),
          ),
        );
      });
    });
}
