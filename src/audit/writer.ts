import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.js';
import type { StoredAuditEvent } from './event.js';
import type { AuditEventInput, AuditEventType, AuditSink } from './sink.js';
import type { AuditStore } from './store.js';
import type { FromWriterThread, ToWriterThread, WriterThreadData } from './writer-thread.js';

/**
 * The event types record() may drop when the queue is full: summaries and notices that no kernel
 * entry depends on (`signal`: a pair was signalled, already aggregated per window; `reauth`: a
 * re-authentication starts). Every other type records a decision (an entry written, expired,
 * removed or revoked; a handshake that earned an entry or was refused; an SVID rotation; a
 * witnessed or refused head; a clock step; a change of the policy in force) and is queued even
 * beyond maxQueue: its bound is the auth path's, which starts no new work while the queue is above
 * its high-water mark (AuthManager, auditBackpressure); a policy change is one event per policy
 * taken.
 */
export const DROPPABLE_AUDIT_EVENTS: ReadonlySet<AuditEventType> = new Set<AuditEventType>([
  'signal',
  'reauth',
]);

export interface AuditWriterOptions {
  /**
   * Events held in memory before record() drops events of DROPPABLE_AUDIT_EVENTS (counted, marked
   * by a gap event). Other events are never dropped by this bound. Default 10,000.
   */
  maxQueue?: number;
  /**
   * Events per transaction at most. Default 2,000. With `thread`, events per message to the thread
   * (which writes messages that arrive together in one transaction of up to 20,000).
   */
  batchSize?: number;
  /**
   * Write from a worker thread with its own connection to the same file, so hashing, SQLite and
   * WAL checkpoints never hold up the event loop; a few batches are in flight and the next
   * gathers meanwhile. The store passed in stays the connection for queries and retention, and its
   * onAppend listeners hear of every batch the thread commits. Default false.
   */
  thread?: boolean;
  /** The compiled writer-thread module (default: writer-thread.js beside this module). */
  threadScript?: URL;
  /** How long a partial batch may wait before it is written. Default 20 ms. */
  flushIntervalMs?: number;
  logger?: Logger;
  /** Told after each write (queue depth) and each drop (total dropped), e.g. for metrics. */
  observer?: AuditWriterObserver;
}

export interface AuditWriterObserver {
  queueDepth?(depth: number): void;
  dropped?(n: number): void;
}

const MAX_BATCHES_IN_FLIGHT = 8;

/**
 * SQLite errors a later write may not meet: the disk full (SQLITE_FULL), I/O errors, the database
 * busy or locked. A batch that fails with one of them is kept and written again; any other error
 * loses the batch (counted, and marked by a gap event).
 */
const RETRYABLE = /^SQLITE_(FULL|IOERR|BUSY|LOCKED)/;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;

export interface AuditWriterStats {
  queued: number;
  /** Sent to the writer thread, not yet committed. */
  inFlight: number;
  written: number;
  dropped: number;
  writeErrors: number;
}

/**
 * The AuditSink the daemon hands to the auth path. record() only pushes onto a bounded in-memory
 * queue; batches are written in one SQLite transaction each, on a later turn of the event loop.
 * When the queue is full the event is dropped and counted; as soon as there is room again a `gap`
 * event with the number of lost events is recorded in their place, so the trail shows the hole.
 */
export class AuditWriter implements AuditSink {
  private queue: AuditEventInput[] = [];
  /** Events queued before droppable ones are dropped (AuditWriterOptions.maxQueue). */
  readonly maxQueue: number;
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private closed = false;
  private droppedTotal = 0;
  private writtenTotal = 0;
  private writeErrors = 0;
  private worker: Worker | undefined;
  /** Events sent to the thread and not yet reported committed or failed. */
  private inFlight = 0;
  /** Batches sent and not yet answered: at most MAX_BATCHES_IN_FLIGHT. */
  private batchesInFlight = 0;
  private nextBatchId = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private closing: Promise<void> | undefined;
  /** Dropped since the last gap event, with counts by event type ('unknown' if not known). */
  private gap:
    { count: number; firstAtMs: number; lastAtMs: number; types: Record<string, number> } | undefined;
  /** Events of batches posted to the thread and not answered yet, by batch id. */
  private readonly posted = new Map<number, AuditEventInput[]>();
  /** Batches that failed with a retryable error while others were in flight, by batch id. */
  private readonly retryBatches = new Map<number, AuditEventInput[]>();
  /** Set while writes fail with a retryable error: nothing is sent until it fires. */
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = 0;
  /** Start of the current outage (first retryable failure), for the recovery log line. */
  private outageSinceMs: number | undefined;
  /** close() was called: a failing write is not retried any more (its events are counted lost). */
  private stopping = false;

  constructor(
    private readonly store: AuditStore,
    private readonly opts: AuditWriterOptions = {},
  ) {
    this.maxQueue = opts.maxQueue ?? 10_000;
    this.batchSize = opts.batchSize ?? 2_000;
    this.flushIntervalMs = opts.flushIntervalMs ?? 20;
    if (opts.thread) this.startThread();
  }

  private startThread(): void {
    const data: WriterThreadData = { path: this.store.path };
    const worker = new Worker(this.opts.threadScript ?? new URL('./writer-thread.js', import.meta.url), {
      workerData: data,
    });
    this.worker = worker;
    worker.on('message', (m: FromWriterThread) => this.onThreadMessage(m));
    worker.on('error', (err) => {
      this.opts.logger?.error({ event: 'audit_writer_thread_failed', err }, 'audit writer thread failed');
    });
    worker.on('exit', (code) => {
      if (this.worker !== worker) return;
      // Unexpected: what it held is lost (counted, marked by a gap); carry on writing in this thread.
      this.worker = undefined;
      this.opts.logger?.error(
        { event: 'audit_writer_thread_exit', code, lost: this.inFlight },
        'audit writer thread exited; writing in the main thread from now on',
      );
      if (this.inFlight > 0) this.lose(this.inFlight, [...this.posted.values()].flat());
      this.posted.clear();
      this.inFlight = 0;
      this.batchesInFlight = 0;
      this.schedule();
      this.settleIdle();
    });
  }

  private onThreadMessage(m: FromWriterThread): void {
    switch (m.op) {
      case 'ready':
      case 'closed':
        return;
      case 'open-failed':
        this.opts.logger?.error(
          { event: 'audit_writer_thread_failed', err: { message: m.message } },
          'audit writer thread could not open the database',
        );
        return;
      case 'appended':
        this.inFlight -= m.count;
        this.batchesInFlight--;
        this.writtenTotal += m.count;
        this.posted.delete(m.id);
        this.store.notifyAppended(m.lastSeq);
        this.recovered();
        break;
      case 'failed': {
        this.inFlight -= m.count;
        this.batchesInFlight--;
        const events = this.posted.get(m.id);
        this.posted.delete(m.id);
        const err = Object.assign(new Error(m.message), m.code ? { code: m.code } : {});
        if (events && this.retryable(err)) {
          this.retryBatches.set(m.id, events);
          this.noteRetry(err, m.count);
        } else {
          this.writeFailed(m.count, err, events);
        }
        break;
      }
    }
    // Every answer is in: failed batches go back to the head of the queue, oldest first.
    if (this.batchesInFlight === 0 && this.retryBatches.size > 0) {
      const ids = [...this.retryBatches.keys()].sort((a, b) => a - b);
      this.queue = [...ids.flatMap((id) => this.retryBatches.get(id)!), ...this.queue];
      this.retryBatches.clear();
    }
    this.opts.observer?.queueDepth?.(this.queue.length);
    if (this.queue.length > 0 || this.gap) this.sendBatch();
    this.settleIdle();
  }

  /**
   * Queues the event. With the queue at maxQueue an event of DROPPABLE_AUDIT_EVENTS is dropped
   * (counted, by type, in the next gap event); any other event is queued all the same. After
   * close() every event is dropped and counted.
   */
  record(event: AuditEventInput): void {
    try {
      const now = Date.now();
      const full = this.queue.length + this.inFlight >= this.maxQueue;
      if (this.closed || (full && DROPPABLE_AUDIT_EVENTS.has(event.type))) {
        this.lose(1, [event], now);
        return;
      }
      if (this.gap && !full) this.pushGap();
      this.queue.push(event.atMs === undefined ? { ...event, atMs: now } : event);
      this.schedule();
    } catch {
      // record() must never throw into the auth path
    }
  }

  private pushGap(): void {
    const g = this.gap!;
    this.gap = undefined;
    // May exceed maxQueue by one: the gap marker is never dropped.
    this.queue.push({
      type: 'gap',
      outcome: 'failure',
      reason: 'audit-queue-overflow',
      atMs: g.lastAtMs,
      details: {
        dropped: g.count,
        droppedByType: g.types,
        firstDroppedAtMs: g.firstAtMs,
        lastDroppedAtMs: g.lastAtMs,
      },
    });
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.queue.length >= this.batchSize) {
      if (!this.immediate) this.immediate = setImmediate(() => this.flushSome());
    } else if (!this.timer && !this.immediate) {
      this.timer = setTimeout(() => this.flushSome(), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  private flushSome(): void {
    this.immediate = undefined;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.worker) {
      // with the pipeline full, the next reply sends the next batch
      this.sendBatch();
      return;
    }
    this.writeBatch();
    if (this.queue.length > 0 && !this.retryTimer) {
      this.immediate = setImmediate(() => this.flushSome());
    }
    this.settleIdle();
  }

  private takeBatch(): AuditEventInput[] {
    const batch = this.queue.length <= this.batchSize ? this.queue : this.queue.slice(0, this.batchSize);
    this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
    return batch;
  }

  /**
   * Post batches to the writer thread while fewer than MAX_BATCHES_IN_FLIGHT are unanswered, so
   * the thread always has the next ones waiting while it commits; beyond that, events gather here.
   */
  private sendBatch(): void {
    // one batch per turn of the loop: each post copies the batch, and copies add up to a stall
    this.sendOne();
    if (this.worker && this.batchesInFlight < MAX_BATCHES_IN_FLIGHT && this.queue.length > 0) {
      this.immediate ??= setImmediate(() => this.flushSome());
    }
  }

  private sendOne(): void {
    if (!this.worker || this.batchesInFlight >= MAX_BATCHES_IN_FLIGHT) return;
    if (this.retryTimer || this.retryBatches.size > 0) return; // writes failing: wait for the retry
    if (this.gap && !this.closed) this.pushGap();
    if (this.queue.length === 0) return;
    const events = this.takeBatch();
    const msg: ToWriterThread = { op: 'append', id: ++this.nextBatchId, events };
    try {
      this.worker.postMessage(msg);
      this.posted.set(msg.id, events);
      this.inFlight += events.length;
      this.batchesInFlight++;
    } catch (err) {
      // an event that cannot be cloned (a function in details, say): the batch is lost, counted
      this.writeFailed(events.length, err, events);
    }
  }

  /** Counts n events lost (by type when `events` holds them) for the next gap event. */
  private lose(n: number, events?: readonly AuditEventInput[], now = Date.now()): void {
    this.droppedTotal += n;
    const g = (this.gap ??= { count: 0, firstAtMs: now, lastAtMs: now, types: {} });
    g.count += n;
    g.lastAtMs = now;
    let known = 0;
    for (const e of events ?? []) {
      g.types[e.type] = (g.types[e.type] ?? 0) + 1;
      known++;
    }
    if (known < n) g.types['unknown'] = (g.types['unknown'] ?? 0) + n - known;
    this.opts.observer?.dropped?.(this.droppedTotal);
  }

  private writeFailed(n: number, err: unknown, events?: readonly AuditEventInput[]): void {
    // The batch is lost: count it as dropped and mark the hole with a gap event when writing works again.
    this.writeErrors++;
    this.lose(n, events);
    this.opts.logger?.error({ event: 'audit_write_failed', err, dropped: n }, 'audit batch write failed');
  }

  private settleIdle(): void {
    if (this.queue.length > 0 || this.inFlight > 0) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private retryable(err: unknown): boolean {
    const code = (err as { code?: unknown }).code;
    return !this.stopping && typeof code === 'string' && RETRYABLE.test(code);
  }

  /**
   * A write failed with a retryable error (the disk full, say): the events are kept and written
   * again after a backoff (100 ms doubling to 5 s); meanwhile new events queue up to maxQueue, and
   * beyond it are dropped and counted in the next gap event. Logged once per outage.
   */
  private noteRetry(err: unknown, n: number): void {
    this.writeErrors++;
    if (this.outageSinceMs === undefined) {
      this.outageSinceMs = Date.now();
      this.opts.logger?.error(
        { event: 'audit_write_failed', err, retrying: n },
        'audit write failed: events kept in memory and retried',
      );
    }
    this.retryDelayMs = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, this.retryDelayMs * 2));
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.flushSome();
    }, this.retryDelayMs);
    this.retryTimer.unref();
  }

  private recovered(): void {
    if (this.outageSinceMs === undefined) return;
    this.opts.logger?.warn(
      {
        event: 'audit_write_recovered',
        outage_ms: Date.now() - this.outageSinceMs,
        failed_writes: this.writeErrors,
      },
      'audit writes succeed again',
    );
    this.outageSinceMs = undefined;
    this.retryDelayMs = 0;
  }

  /** Write one batch; returns how many events were written. */
  private writeBatch(): number {
    if (this.queue.length === 0 || this.retryTimer) return 0;
    const batch = this.takeBatch();
    try {
      this.store.appendQuiet(batch);
      this.writtenTotal += batch.length;
      this.recovered();
    } catch (err) {
      if (this.retryable(err)) {
        this.queue = [...batch, ...this.queue];
        this.noteRetry(err, batch.length);
        this.opts.observer?.queueDepth?.(this.queue.length);
        return 0;
      }
      this.writeFailed(batch.length, err, batch);
    }
    this.opts.observer?.queueDepth?.(this.queue.length);
    return batch.length;
  }

  /**
   * Write everything queued now. In this thread: synchronously. With `thread`: starts sending and
   * returns; await drain() to know it is committed.
   */
  flush(): void {
    if (this.worker) {
      this.sendBatch();
      return;
    }
    if (this.gap && !this.closed) this.pushGap();
    while (this.queue.length > 0) {
      const before = this.queue.length;
      this.writeBatch();
      if (this.queue.length >= before) break;
    }
  }

  /** Resolves once everything recorded so far is committed (or counted as lost). */
  drain(): Promise<void> {
    if (!this.worker) {
      this.flush();
      return Promise.resolve();
    }
    if (this.gap && !this.closed) this.pushGap();
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.sendBatch();
    return done;
  }

  stats(): AuditWriterStats {
    return {
      queued: this.queue.length,
      inFlight: this.inFlight,
      written: this.writtenTotal,
      dropped: this.droppedTotal,
      writeErrors: this.writeErrors,
    };
  }

  get queueDepth(): number {
    return this.queue.length + this.inFlight;
  }

  get dropped(): number {
    return this.droppedTotal;
  }

  /**
   * Write what is queued and stop accepting events (later ones are counted as dropped). In this
   * thread everything is written before close() returns; with `thread`, await the promise: it
   * settles once the thread has committed the rest and closed its connection. Idempotent.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.stopping = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    if (!this.worker) {
      this.flush();
      this.closed = true;
      this.closing = Promise.resolve();
      return this.closing;
    }
    const worker = this.worker;
    this.closing = (async () => {
      await this.drain();
      this.closed = true;
      if (this.worker !== worker) {
        // the thread died meanwhile; what it left was written here
        this.flush();
        return;
      }
      // the worker variable is cleared first so its exit is not taken for a failure
      this.worker = undefined;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ op: 'close' } satisfies ToWriterThread);
      await exited;
    })();
    return this.closing;
  }
}

export type { StoredAuditEvent };
