import { Option, type Command } from 'commander';
import { MAX_PAGE_SIZE, type EventFilterMsg, type EventMsg, type NodeAnswerMsg } from '../../api/index.js';
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
/** Through meshauth-relay: the node whose trail holds the event comes first. */
const RELAY_HEADER = ['ORIGIN', ...HEADER];

function cells(e: EventMsg, relay = false): string[] {
  return [
    ...(relay ? [e.origin || '-'] : []),
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
  if (e.detailsJson) {
    // a peer's details that are not JSON are passed on as the text they are, not a failed command
    try {
      o['details'] = JSON.parse(e.detailsJson);
    } catch {
      o['detailsText'] = e.detailsJson;
    }
  }
  o['hash'] = e.hash;
  if (e.origin) o['origin'] = e.origin;
  return JSON.stringify(o);
}

function filterOf(o: EventsOptions, now: number): EventFilterMsg {
  const f: EventFilterMsg = {};
  if (o.identity) f.identity = o.identity;
  if (o.node) f.node = o.node;
  if (o.outcome) f.outcome = o.outcome;
  if (o.reason) f.reason = o.reason;
  if (o.type?.length) f.types = o.type;
  const since = o.since ? parseTimeArg('--since', o.since, now) : undefined;
  const until = o.until ? parseTimeArg('--until', o.until, now) : undefined;
  if (since !== undefined && until !== undefined && until <= since) {
    throw new CliError(
      `--until ${o.until} (${isoTime(until)}) must be later than --since ${o.since} (${isoTime(since)})`,
      2,
    );
  }
  if (since !== undefined) f.sinceMs = since;
  if (until !== undefined) f.untilMs = until;
  return f;
}

export function registerEventsCommand(program: Command, ctx: CliContext): void {
  program
    .command('events')
    .description(
      'Show audit events in the order they were written to the trail (SEQ, the last written last); ' +
        '--follow keeps streaming new ones. TIME is when an event happened, which can be earlier ' +
        'than rows written before it: a signal summary is dated at its first signal and written ' +
        'when its window closes. Through --relay, events of all nodes are merged by TIME',
    )
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
    .option('-n, --limit <n>', 'show the last N matching events written (0 = all)', '50')
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
      const limit = /^[0-9]+$/.test(o.limit.trim()) ? Number(o.limit) : Number.NaN;
      if (!Number.isSafeInteger(limit) || limit < 0)
        throw new CliError(`--limit: must be a whole number, 0 for all (got ${JSON.stringify(o.limit)})`, 2);
      const filter = filterOf(o, ctx.now());
      const relay = Boolean(ctx.globals().relay);
      await ctx.withClient(async (client) => {
        const printer = new EventPrinter(format, ctx, relay, Boolean(o.follow));
        let head = 0;
        if (o.follow && !relay) head = (await client.status()).audit?.lastSeq ?? 0;
        const missing = new Map<string, NodeAnswerMsg>();
        const note = (p: { partial: boolean; nodes: NodeAnswerMsg[] }) => {
          if (p.partial) for (const n of p.nodes) if (!n.ok) missing.set(n.node, n);
        };
        // through the relay: resume each node right after the newest of its events shown, so
        // nothing it wrote between the query and the follow is lost or shown twice
        const byNode: Record<string, number> = {};
        const shown = (events: readonly EventMsg[]) => {
          if (relay)
            for (const e of events) if (e.origin) byNode[e.origin] = Math.max(byNode[e.origin] ?? 0, e.seq);
        };
        if (limit === 0) {
          // every matching event: printed page by page as it comes, never all held at once (a
          // trail holds up to audit.maxEvents, ten million by default; before, the CLI kept them
          // all before printing the first)
          let token = '';
          let first = true;
          for (;;) {
            const p = await client.queryEvents({ filter, pageSize: 1000, pageToken: token });
            note(p);
            const page = p.events.filter((e) => relay || !o.follow || e.seq <= head);
            if (first) printer.batch(page);
            else for (const e of page) printer.one(e);
            first = false;
            shown(page);
            // the reader went away (| head) or Ctrl-C: fetch no more
            if (ctx.io.signal?.aborted) return;
            if (!p.nextPageToken || (!relay && o.follow && p.events.some((e) => e.seq > head))) break;
            // through the relay a missing node keeps the token alive: stop once only it is left
            if (relay && p.events.length === 0) break;
            token = p.nextPageToken;
          }
        } else {
          // the last `limit` events, newest first, in pages the API accepts (a page size past
          // MAX_PAGE_SIZE is refused; before, one past 2^31 was sent wrapped and showed fewer)
          const newest: EventMsg[] = [];
          let token = o.follow && !relay ? `s${head + 1}` : '';
          for (;;) {
            const p = await client.queryEvents({
              filter,
              pageSize: Math.min(limit - newest.length, MAX_PAGE_SIZE),
              newestFirst: true,
              ...(token ? { pageToken: token } : {}),
            });
            note(p);
            newest.push(...p.events);
            if (limit <= MAX_PAGE_SIZE || newest.length >= limit) break;
            if (!p.nextPageToken || p.events.length === 0) break;
            token = p.nextPageToken;
          }
          const initial = newest.reverse();
          printer.batch(initial);
          shown(initial);
        }
        // a relay answer without some node says so, never silently short
        for (const n of missing.values()) {
          ctx.io.err(
            `meshauth: PARTIAL: node ${n.node} is missing from this answer (${n.reason}: ${n.message})\n`,
          );
        }
        if (!o.follow) return;
        const stream = client.followEvents(
          relay ? { filter, afterSeqByNode: byNode } : { filter, afterSeq: head },
          ctx.io.signal,
        );
        for await (const e of stream) {
          if (relay && e.seq === 0 && e.type === 'node-unavailable') {
            ctx.io.err(
              `meshauth: PARTIAL: node ${e.origin} stopped streaming (${e.reason}); events from it are missing until it is back\n`,
            );
          } else if (relay && e.seq === 0 && e.type === 'node-available') {
            ctx.io.err(
              `meshauth: node ${e.origin} is streaming again (nothing it wrote meanwhile is missed)\n`,
            );
          } else printer.one(e);
        }
        // Ctrl-C, SIGTERM or a reader gone away end a follow as asked; the server ending it
        // (meshauthd or the relay stopping) is not the end of what the reader wanted: before,
        // that exited 0 without a word, and a script watching the trail stopped seeing events
        if (!ctx.io.signal?.aborted) {
          throw new CliError(
            `${relay ? 'meshauth-relay' : 'meshauthd'} ended the event stream (it stopped or restarted): events written from now on are not shown; run the command again to go on following`,
          );
        }
      });
    });
}

class EventPrinter {
  private widths: number[] | undefined;

  private readonly header: string[];

  constructor(
    private readonly format: OutputFormat,
    private readonly ctx: CliContext,
    private readonly relay = false,
    private readonly follow = false,
  ) {
    this.header = relay ? RELAY_HEADER : HEADER;
  }

  batch(events: EventMsg[]): void {
    if (this.format === 'json') {
      for (const e of events) this.ctx.io.out(eventJson(e) + '\n');
      return;
    }
    const rows = events.map((e) => cells(e, this.relay));
    // no heading over nothing: without --follow no rows will come under it
    if (rows.length === 0 && !this.follow) {
      this.ctx.io.err('meshauth: no events match\n');
      return;
    }
    this.ctx.io.out(renderTable(this.header, rows));
    this.widths = this.header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  }

  one(e: EventMsg): void {
    if (this.format === 'json') {
      this.ctx.io.out(eventJson(e) + '\n');
      return;
    }
    this.ctx.io.out(renderRow(cells(e, this.relay), this.widths ?? this.header.map((h) => h.length)));
  }
}
