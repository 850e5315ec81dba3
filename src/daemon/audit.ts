import type { Logger } from 'pino';
import {
  AuditStore,
  AuditWriter,
  OtlpLogExporter,
  RetentionRunner,
  SignalAggregator,
  type AuditEventInput,
  type AuditSink,
  type AuditWriterObserver,
} from '../audit/index.js';
import type { EntryLifecycleEvent, EntryTrail } from '../auth/index.js';
import { trailKey } from '../auth/index.js';
import type { DaemonConfig } from '../config/index.js';

export interface DaemonAudit {
  store: AuditStore;
  writer: AuditWriter;
  /** The sink the auth path uses: signals are aggregated per pair and window, the rest queued. */
  sink: AuditSink;
  /** Late binding of metrics (they start after the audit trail). */
  setObserver(o: AuditWriterObserver): void;
  close(): Promise<void>;
}

export function openAudit(config: DaemonConfig, logger: Logger): DaemonAudit {
  const log = logger.child({ component: 'audit' });
  const store = AuditStore.open({ path: config.audit.path });
  let observer: AuditWriterObserver = {};
  // SQLite work happens in a writer thread: the auth path only ever pushes onto a queue
  const writer = new AuditWriter(store, {
    thread: true,
    logger: log,
    observer: {
      queueDepth: (d) => observer.queueDepth?.(d),
      dropped: (n) => observer.dropped?.(n),
    },
  });
  const aggregator = new SignalAggregator(writer, { windowMs: 5_000 });
  aggregator.start();
  const retention = new RetentionRunner(store, {
    maxAgeMs: config.audit.maxAgeMs,
    maxRows: config.audit.maxEvents,
    logger: log,
  });
  retention.start();
  let otlp: OtlpLogExporter | undefined;
  if (config.audit.otlpEndpoint) {
    // reads committed rows on its own schedule: never in the write path
    otlp = new OtlpLogExporter({
      store,
      endpoint: config.audit.otlpEndpoint,
      node: config.node,
      batchSize: config.audit.otlpBatchSize,
      timeoutMs: config.audit.otlpTimeoutMs,
      // resumes after the last acknowledged event across restarts (at-least-once)
      cursorFile: `${config.audit.path}.otlp-cursor`,
      logger: logger.child({ component: 'otlp' }),
    });
    otlp.start();
  }
  const sink: AuditSink = {
    record(event: AuditEventInput): void {
      if (event.type === 'signal') {
        aggregator.observe({
          localId: event.localId,
          remoteId: event.remoteId,
          node: event.node,
          direction: event.direction,
        });
      } else {
        writer.record(event);
      }
    },
  };
  log.info(
    { event: 'audit_opened', path: config.audit.path, last_seq: store.lastSeq() },
    'audit trail opened',
  );
  return {
    store,
    writer,
    sink,
    setObserver: (o) => (observer = o),
    close: async () => {
      aggregator.close();
      retention.close();
      otlp?.close();
      await writer.close();
      store.close();
    },
  };
}

/** The last lifecycle event of each pair's entry in the trail, from sinceMs on (EntryTrail). */
export function entryTrail(store: AuditStore): EntryTrail {
  return (sinceMs) => {
    const out = new Map<string, EntryLifecycleEvent>();
    let afterSeq: number | undefined;
    for (;;) {
      const page = store.query({
        types: ['entry-written', 'entry-removed', 'entry-expired'],
        sinceMs,
        ...(afterSeq === undefined ? {} : { afterSeq }),
        limit: 10_000,
      });
      if (page.length === 0) break;
      for (const e of page) out.set(trailKey(e), e.type as EntryLifecycleEvent);
      afterSeq = page[page.length - 1]!.seq;
    }
    return out;
  };
}
