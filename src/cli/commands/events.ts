import { Option, type Command } from 'commander';
import type { EventFilterMsg, EventMsg } from '../../api/index.js';
import { AUDIT_EVENT_TYPES } from '../../audit/index.js';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';
import {
  detailsSummary,
  isoTime,
  parseOutput,
  parseTimeArg,
  renderRow,
  renderTable,
  type OutputFormat,
} from '../format.js';

interface EventsOptions {
  follow?: boolean;
  identity?: string;
  node?: string;
  outcome?: string;
  reason?: string;
  type?: string[];
  since?: string;
  until?: string;
  limit: string;
  output: string;
}

const HEADER = ['TIME', 'SEQ', 'TYPE', 'OUTCOME', 'REASON', 'LOCAL', 'REMOTE', 'NODE', 'DIR', 'DETAILS'];

function cells(e: EventMsg): string[] {
  return [
    isoTime(e.atMs),
    String(e.seq),
    e.type,
    e.outcome || '-',
    e.reason || '-',
    e.localId || '-',
    e.remoteId || '-',
    e.node || '-',
    e.direction || '-',
    detailsSummary(e.detailsJson),
  ];
}

/** The JSON line printed for one event. */
export function eventJson(e: EventMsg): string {
  const o: Record<string, unknown> = { seq: e.seq, time: isoTime(e.atMs), atMs: e.atMs, type: e.type };
  if (e.outcome) o['outcome'] = e.outcome;
  if (e.reason) o['reason'] = e.reason;
  if (e.localId) o['localId'] = e.localId;
  if (e.remoteId) o['remoteId'] = e.remoteId;
  if (e.node) o['node'] = e.node;
  if (e.direction) o['direction'] = e.direction;
  if (e.detailsJson) o['details'] = JSON.parse(e.detailsJson);
  o['hash'] = e.hash;
  return JSON.stringify(o);
}

function filterOf(o: EventsOptions, now: number): EventFilterMsg {
  const f: EventFilterMsg = {};
  if (o.identity) f.identity = o.identity;
  if (o.node) f.node = o.node;
  if (o.outcome) f.outcome = o.outcome;
  if (o.reason) f.reason = o.reason;
  if (o.type?.length) f.types = o.type;
  if (o.since) f.sinceMs = parseTimeArg('--since', o.since, now);
  if (o.until) f.untilMs = parseTimeArg('--until', o.until, now);
  return f;
}

export function registerEventsCommand(program: Command, ctx: CliContext): void {
  program
    .command('events')
    .description('Show audit events (newest last); --follow keeps streaming new ones')
    .option('-f, --follow', 'after the matching events, stream new ones as they are written (Ctrl-C to stop)')
    .option(
      '--identity <spiffe-id>',
      'local or remote SPIFFE ID, exact or a glob pattern (spiffe://td/ns/prod/*)',
    )
    .option('--node <name>', 'peer node name')
    .addOption(new Option('--outcome <outcome>', 'event outcome').choices(['success', 'failure', 'info']))
    .option('--reason <code>', 'reason code (svid-expired, spiffe-id-mismatch, timeout, ...)')
    .option('--type <type...>', `event type(s): ${AUDIT_EVENT_TYPES.join(', ')}`)
    .option('--since <when>', 'only events at or after: a duration ago (10m, 2h, 1d) or an ISO time')
    .option('--until <when>', 'only events before: a duration ago or an ISO time')
    .option('-n, --limit <n>', 'show the newest N matching events (0 = all)', '50')
    .option('-o, --output <format>', 'table or json (one object per line)', 'table')
    .addHelpText(
      'after',
      `
Examples:
  meshauth events --outcome failure --since 1h
  meshauth events --identity 'spiffe://example.org/ns/prod/*' -o json
  meshauth events --node node-2 --reason svid-expired --limit 0
  meshauth events --follow --type handshake-failed peer-unreachable`,
    )
    .action(async (o: EventsOptions) => {
      const format = parseOutput(o.output);
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 0)
        throw new CliError(`--limit must be a whole number, got "${o.limit}"`, 2);
      const filter = filterOf(o, ctx.now());
      await ctx.withClient(async (client) => {
        const printer = new EventPrinter(format, ctx);
        let head = 0;
        if (o.follow) head = (await client.status()).audit?.lastSeq ?? 0;
        const initial: EventMsg[] = [];
        if (limit === 0) {
          let token = '';
          for (;;) {
            const p = await client.queryEvents({ filter, pageSize: 1000, pageToken: token });
            initial.push(...p.events.filter((e) => !o.follow || e.seq <= head));
            if (!p.nextPageToken || (o.follow && p.events.some((e) => e.seq > head))) break;
            token = p.nextPageToken;
          }
        } else {
          const p = await client.queryEvents({
            filter,
            pageSize: limit,
            newestFirst: true,
            ...(o.follow ? { pageToken: `s${head + 1}` } : {}),
          });
          initial.push(...p.events.reverse());
        }
        printer.batch(initial);
        if (!o.follow) return;
        const stream = client.followEvents({ filter, afterSeq: head }, ctx.io.signal);
        for await (const e of stream) printer.one(e);
      });
    });
}

class EventPrinter {
  private widths: number[] | undefined;

  constructor(
    private readonly format: OutputFormat,
    private readonly ctx: CliContext,
  ) {}

  batch(events: EventMsg[]): void {
    if (this.format === 'json') {
      for (const e of events) this.ctx.io.out(eventJson(e) + '\n');
      return;
    }
    const rows = events.map(cells);
    this.ctx.io.out(renderTable(HEADER, rows));
    this.widths = HEADER.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  }

  one(e: EventMsg): void {
    if (this.format === 'json') {
      this.ctx.io.out(eventJson(e) + '\n');
      return;
    }
    this.ctx.io.out(renderRow(cells(e), this.widths ?? HEADER.map((h) => h.length)));
  }
}
