import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import type { Logger } from '../log.js';
import { systemClock, type Clock, type Timer } from '../time.js';
import type { StoredAuditEvent } from './event.js';
import type { AuditStore } from './store.js';

/**
 * Ships committed audit events to an OpenTelemetry log pipeline as OTLP/HTTP JSON log records
 * (OTLP specification, "OTLP/HTTP" with Content-Type application/json; the protobuf-JSON mapping of
 * opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest).
 *
 * The exporter reads what the trail has committed (AuditStore.onAppend, then query by seq), so it
 * never sits in the write path: the writer is not slowed and nothing is dropped from the trail when
 * the receiver is slow or down. Its buffer is one batch (batchSize events) in flight; a failed
 * batch is retried with exponential backoff (retryable: network errors, 429, 502, 503, 504) and the
 * cursor only moves on success, so the receiver gets every event at least once, in seq order, as
 * long as retention has not removed it meanwhile (then the skipped range is logged and counted).
 * A batch the receiver rejects as bad (other 4xx) is logged, counted and skipped.
 *
 * The cursor (last seq the receiver acknowledged, and that row's hash) is written to `cursorFile`
 * after every acknowledged batch (a temporary file renamed over it: never half written), so a
 * restarted exporter resumes right after the last acknowledged event: delivery is at-least-once
 * (a batch acknowledged just before a crash, whose cursor was not yet written, is sent again;
 * receivers can deduplicate on meshauth.audit.seq + host.name). A cursor whose row has another hash
 * than the trail's (the database was replaced) is not trusted: export starts at seq 1 of the new
 * trail, and so does a cursor file that exists but cannot be read or parsed (sent again rather
 * than skipped). Without a cursor file (first start, or none configured) export starts at the
 * chain head, or after startAfterSeq.
 */
export interface OtlpExporterOptions {
  store: AuditStore;
  /** OTLP/HTTP logs endpoint, e.g. http://collector:4318/v1/logs. */
  endpoint: string;
  /** resource attribute host.name and meshauth.node. */
  node: string;
  /** Events per request, at most. Default 512. */
  batchSize?: number;
  /** Extra HTTP headers (authentication). */
  headers?: Record<string, string>;
  /** First retry after this, doubling up to maxBackoffMs. Defaults 500 ms and 30 s. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
  /** Export events with seq above this when there is no cursor file (default: the chain head). */
  startAfterSeq?: number;
  /** Where the cursor is kept across restarts (the daemon: <audit db>.otlp-cursor). */
  cursorFile?: string;
  clock?: Clock;
  fetch?: typeof fetch;
  logger?: Logger;
}

export interface OtlpExporterStats {
  /** Last seq the receiver accepted. */
  exportedSeq: number;
  exported: number;
  /** Requests that failed and were retried. */
  retries: number;
  /** Events the receiver rejected as bad (skipped) or retention removed before export. */
  skipped: number;
}

type AnyValue = { stringValue: string } | { intValue: string } | { boolValue: boolean };
const str = (v: string): AnyValue => ({ stringValue: v });

/** OTLP severity numbers (logs data model): INFO = 9, WARN = 13. */
const SEVERITY_INFO = 9;
const SEVERITY_WARN = 13;

/** One audit event as an OTLP LogRecord (JSON mapping). */
export function auditLogRecord(e: StoredAuditEvent): Record<string, unknown> {
  const attrs: { key: string; value: AnyValue }[] = [
    { key: 'meshauth.audit.seq', value: { intValue: String(e.seq) } },
    { key: 'meshauth.audit.type', value: str(e.type) },
    { key: 'meshauth.audit.hash', value: str(e.hash) },
  ];
  const opt: [string, string | undefined][] = [
    ['meshauth.audit.outcome', e.outcome],
    ['meshauth.audit.reason', e.reason],
    ['meshauth.local_id', e.localId],
    ['meshauth.remote_id', e.remoteId],
    ['meshauth.peer_node', e.node],
    ['meshauth.direction', e.direction],
    ['meshauth.audit.details', e.details ? JSON.stringify(e.details) : undefined],
  ];
  for (const [k, v] of opt) if (v !== undefined && v !== '') attrs.push({ key: k, value: str(v) });
  const failure = e.outcome === 'failure';
  return {
    timeUnixNano: `${BigInt(e.atMs) * 1_000_000n}`,
    severityNumber: failure ? SEVERITY_WARN : SEVERITY_INFO,
    severityText: failure ? 'WARN' : 'INFO',
    eventName: `meshauth.audit.${e.type}`,
    body: str(`${e.type}${e.outcome ? ` ${e.outcome}` : ''}${e.reason ? ` (${e.reason})` : ''}`),
    attributes: attrs,
  };
}

/** An ExportLogsServiceRequest (JSON mapping) for a batch of one node's events. */
export function exportLogsRequest(
  node: string,
  events: readonly StoredAuditEvent[],
): Record<string, unknown> {
  return {
    resourceLogs: [
      {
        resource: {
          attributes: [
            { key: 'service.name', value: str('meshauthd') },
            { key: 'host.name', value: str(node) },
            { key: 'meshauth.node', value: str(node) },
          ],
        },
        scopeLogs: [{ scope: { name: 'meshauth.audit' }, logRecords: events.map(auditLogRecord) }],
      },
    ],
  };
}

export class OtlpLogExporter {
  private readonly clock: Clock;
  private readonly batchSize: number;
  private cursor = 0;
  private running = false;
  private closed = false;
  private wakeTimer: Timer | undefined;
  private backoff = 0;
  private unsubscribe: (() => void) | undefined;
  private readonly stats_: OtlpExporterStats = { exportedSeq: 0, exported: 0, retries: 0, skipped: 0 };
  private idle: (() => void)[] = [];

  constructor(private readonly opts: OtlpExporterOptions) {
    this.clock = opts.clock ?? systemClock;
    this.batchSize = opts.batchSize ?? 512;
    const u = new URL(opts.endpoint);
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new Error(`otlp: endpoint ${opts.endpoint} must be an http(s) URL`);
  }

  start(): void {
    if (this.unsubscribe || this.closed) return;
    this.cursor = this.savedCursor() ?? this.opts.startAfterSeq ?? this.opts.store.lastSeq();
    this.stats_.exportedSeq = this.cursor;
    this.unsubscribe = this.opts.store.onAppend(() => this.kick());
    this.kick();
  }

  /** The cursor of the file, checked against the trail; undefined = none (or unreadable). */
  private savedCursor(): number | undefined {
    const file = this.opts.cursorFile;
    if (!file) return undefined;
    let saved: { seq?: unknown; hash?: unknown };
    try {
      saved = JSON.parse(readCursorFile(file)) as typeof saved;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      // a cursor existed but cannot be trusted: everything is sent again rather than anything
      // skipped (at-least-once; receivers deduplicate on seq and node)
      this.opts.logger?.warn(
        { event: 'otlp_cursor_unreadable', file, err },
        'OTLP export cursor unreadable; exporting the trail from seq 1',
      );
      return 0;
    }
    const { seq, hash } = saved;
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0 || typeof hash !== 'string') {
      this.opts.logger?.warn(
        { event: 'otlp_cursor_unreadable', file },
        'OTLP export cursor malformed; exporting the trail from seq 1',
      );
      return 0;
    }
    if (seq === 0) return 0;
    const stats = this.opts.store.stats();
    // retention removed the row (the anchor is the last removed one): resume there, the loop
    // reports the range removed before it was exported
    if (seq <= stats.anchorSeq) return seq;
    const row = this.opts.store.query({ afterSeq: seq - 1, limit: 1 })[0];
    if (row?.seq === seq && row.hash === hash) return seq;
    this.opts.logger?.warn(
      { event: 'otlp_cursor_foreign', file, seq, last_seq: stats.lastSeq },
      'OTLP export cursor does not match this audit trail (replaced?); exporting it from seq 1',
    );
    return 0;
  }

  private saveCursor(seq: number, hash: string): void {
    const file = this.opts.cursorFile;
    if (!file) return;
    try {
      // a fresh file (O_EXCL): whatever stood at the temporary name, a symlink planted there
      // included, is never written through
      rmSync(`${file}.tmp`, { force: true });
      writeFileSync(`${file}.tmp`, JSON.stringify({ seq, hash }) + '\n', { mode: 0o600, flag: 'wx' });
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      // the events were delivered; a lost cursor only means they are sent again after a restart
      this.opts.logger?.warn(
        { event: 'otlp_cursor_write_failed', file, err },
        'could not save the OTLP export cursor',
      );
    }
  }

  stats(): OtlpExporterStats {
    return { ...this.stats_ };
  }

  /** Resolves once every event committed so far was accepted (or skipped). For tests and shutdown. */
  async settled(): Promise<void> {
    if (!this.running && this.cursor >= this.opts.store.lastSeq()) return;
    await new Promise<void>((r) => this.idle.push(r));
  }

  /** Set when rows were committed while the loop ran: it goes round once more. */
  private again = false;

  private kick(): void {
    if (this.closed || this.wakeTimer) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.again = false;
    void this.loop().finally(() => {
      this.running = false;
      if (this.again) {
        this.kick();
        return;
      }
      if (!this.wakeTimer && this.cursor >= this.safeLastSeq()) for (const r of this.idle.splice(0)) r();
    });
  }

  private safeLastSeq(): number {
    try {
      return this.opts.store.lastSeq();
    } catch {
      return this.cursor;
    }
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      let batch: StoredAuditEvent[];
      try {
        batch = this.opts.store.query({ afterSeq: this.cursor, limit: this.batchSize });
      } catch (err) {
        if (!this.closed)
          this.opts.logger?.error({ event: 'otlp_read_failed', err }, 'could not read the audit trail');
        return;
      }
      if (batch.length === 0) return;
      if (batch[0]!.seq > this.cursor + 1) {
        const lost = batch[0]!.seq - this.cursor - 1;
        this.stats_.skipped += lost;
        this.opts.logger?.warn(
          { event: 'otlp_events_pruned', from_seq: this.cursor + 1, to_seq: batch[0]!.seq - 1 },
          'audit events removed by retention before they were exported',
        );
      }
      const outcome = await this.send(batch);
      if (outcome === 'retry') {
        this.stats_.retries++;
        this.backoff = Math.min(
          this.opts.maxBackoffMs ?? 30_000,
          this.backoff === 0 ? (this.opts.backoffMs ?? 500) : this.backoff * 2,
        );
        this.wakeTimer = this.clock.setTimeout(() => {
          this.wakeTimer = undefined;
          this.kick();
        }, this.backoff);
        return;
      }
      this.backoff = 0;
      if (outcome === 'rejected') this.stats_.skipped += batch.length;
      else this.stats_.exported += batch.length;
      this.cursor = batch.at(-1)!.seq;
      this.stats_.exportedSeq = this.cursor;
      this.saveCursor(this.cursor, batch.at(-1)!.hash);
    }
  }

  private async send(batch: StoredAuditEvent[]): Promise<'ok' | 'retry' | 'rejected'> {
    const f = this.opts.fetch ?? fetch;
    try {
      const res = await f(this.opts.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(this.opts.headers ?? {}) },
        body: JSON.stringify(exportLogsRequest(this.opts.node, batch)),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return 'ok';
      if ([429, 502, 503, 504].includes(res.status)) {
        this.opts.logger?.warn(
          { event: 'otlp_export_retry', status: res.status },
          'OTLP receiver busy; retrying',
        );
        return 'retry';
      }
      this.opts.logger?.error(
        {
          event: 'otlp_export_rejected',
          status: res.status,
          from_seq: batch[0]!.seq,
          to_seq: batch.at(-1)!.seq,
        },
        'OTLP receiver rejected a batch of audit events; skipped',
      );
      return 'rejected';
    } catch (err) {
      this.opts.logger?.warn({ event: 'otlp_export_retry', err }, 'OTLP receiver unreachable; retrying');
      return 'retry';
    }
  }

  /** Stop exporting. Idempotent. */
  close(): void {
    this.closed = true;
    this.unsubscribe?.();
    this.wakeTimer?.cancel();
    this.wakeTimer = undefined;
    for (const r of this.idle.splice(0)) r();
  }
}

/** Longest cursor file read: the JSON of one seq and one hash is under 200 bytes. */
const MAX_CURSOR_BYTES = 4096;

/**
 * The cursor file's text. Only a regular file of at most MAX_CURSOR_BYTES is read, not through a
 * symlink and without blocking: a FIFO, a device (/dev/zero) or a link put in its place is refused
 * (an error, so the exporter starts as with an unreadable cursor) instead of hanging or filling
 * the heap at start-up.
 */
function readCursorFile(file: string): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    if (st.size > MAX_CURSOR_BYTES)
      throw new Error(`${file} is ${st.size} bytes (at most ${MAX_CURSOR_BYTES})`);
    const buf = Buffer.alloc(MAX_CURSOR_BYTES);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
