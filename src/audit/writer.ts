import type { Logger } from '../log.js';
import type { StoredAuditEvent } from './event.js';
import type { AuditEventInput, AuditSink } from './sink.js';
import type { AuditStore } from './store.js';

export interface AuditWriterOptions {
  /** Events held in memory at most; beyond that record() drops and counts. Default 10,000. */
  maxQueue?: number;
  /** Events per transaction at most. Default 2,000. */
  batchSize?: number;
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

export interface AuditWriterStats {
  queued: number;
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
  private readonly maxQueue: number;
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private closed = false;
  private droppedTotal = 0;
  private writtenTotal = 0;
  private writeErrors = 0;
  /** Dropped since the last gap event. */
  private gap: { count: number; firstAtMs: number; lastAtMs: number } | undefined;

  constructor(
    private readonly store: AuditStore,
    private readonly opts: AuditWriterOptions = {},
  ) {
    this.maxQueue = opts.maxQueue ?? 10_000;
    this.batchSize = opts.batchSize ?? 2_000;
    this.flushIntervalMs = opts.flushIntervalMs ?? 20;
  }

  record(event: AuditEventInput): void {
    try {
      const now = Date.now();
      if (this.closed || this.queue.length >= this.maxQueue) {
        this.droppedTotal++;
        if (this.gap) {
          this.gap.count++;
          this.gap.lastAtMs = now;
        } else {
          this.gap = { count: 1, firstAtMs: now, lastAtMs: now };
        }
        this.opts.observer?.dropped?.(this.droppedTotal);
        return;
      }
      if (this.gap) this.pushGap();
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
      details: { dropped: g.count, firstDroppedAtMs: g.firstAtMs, lastDroppedAtMs: g.lastAtMs },
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
    this.writeBatch();
    if (this.queue.length > 0) {
      this.immediate = setImmediate(() => this.flushSome());
    }
  }

  /** Write one batch; returns how many events were written. */
  private writeBatch(): number {
    if (this.queue.length === 0) return 0;
    const batch = this.queue.length <= this.batchSize ? this.queue : this.queue.slice(0, this.batchSize);
    this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
    try {
      this.store.append(batch);
      this.writtenTotal += batch.length;
    } catch (err) {
      // The batch is lost: count it as dropped and mark the hole with a gap event when writing works again.
      this.writeErrors++;
      this.droppedTotal += batch.length;
      const now = Date.now();
      this.gap = this.gap
        ? { ...this.gap, count: this.gap.count + batch.length, lastAtMs: now }
        : { count: batch.length, firstAtMs: now, lastAtMs: now };
      this.opts.logger?.error(
        { event: 'audit_write_failed', err, dropped: batch.length },
        'audit batch write failed',
      );
      this.opts.observer?.dropped?.(this.droppedTotal);
    }
    this.opts.observer?.queueDepth?.(this.queue.length);
    return batch.length;
  }

  /** Write everything queued now (synchronously). */
  flush(): void {
    if (this.gap && !this.closed) this.pushGap();
    while (this.queue.length > 0) {
      const before = this.queue.length;
      this.writeBatch();
      if (this.queue.length >= before) break;
    }
  }

  stats(): AuditWriterStats {
    return {
      queued: this.queue.length,
      written: this.writtenTotal,
      dropped: this.droppedTotal,
      writeErrors: this.writeErrors,
    };
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  get dropped(): number {
    return this.droppedTotal;
  }

  /** Flush what is queued and stop accepting events (later ones are counted as dropped). Idempotent. */
  close(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    this.flush();
    this.closed = true;
  }
}

export type { StoredAuditEvent };
