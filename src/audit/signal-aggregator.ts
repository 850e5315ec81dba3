import type { AuditEventInput, AuditSink } from './sink.js';

export interface SignalAggregatorOptions {
  /** Length of one aggregation window. Default 10 s. */
  windowMs?: number;
  /** Most distinct pairs held per window; further pairs are folded into one overflow count. Default 10,000. */
  maxPairs?: number;
  now?: () => number;
}

export interface SignalObservation {
  localId?: string;
  remoteId?: string;
  node?: string;
  direction?: AuditEventInput['direction'];
  /** Packets this signal stands for (default 1). */
  packets?: number;
}

interface Bucket {
  obs: SignalObservation;
  signals: number;
  packets: number;
  firstAtMs: number;
  lastAtMs: number;
}

/**
 * Turns a stream of auth-required signals into one `signal` audit event per pair and window, with
 * signal and packet counts, so a burst of drops is one row rather than thousands.
 */
export class SignalAggregator {
  private buckets = new Map<string, Bucket>();
  private overflow = 0;
  private windowStart: number;
  private readonly windowMs: number;
  private readonly maxPairs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly sink: AuditSink,
    opts: SignalAggregatorOptions = {},
  ) {
    this.windowMs = opts.windowMs ?? 10_000;
    this.maxPairs = opts.maxPairs ?? 10_000;
    this.now = opts.now ?? Date.now;
    this.windowStart = this.now();
  }

  /** Start closing windows on a timer (otherwise call flush() yourself). */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => this.flush(), this.windowMs);
    this.timer.unref();
  }

  observe(o: SignalObservation): void {
    if (this.closed) return;
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) this.flush();
    const key = `${o.localId ?? ''}\u0000${o.remoteId ?? ''}\u0000${o.node ?? ''}\u0000${o.direction ?? ''}`;
    const b = this.buckets.get(key);
    const packets = o.packets ?? 1;
    if (b) {
      b.signals++;
      b.packets += packets;
      b.lastAtMs = now;
    } else if (this.buckets.size >= this.maxPairs) {
      this.overflow += packets;
    } else {
      this.buckets.set(key, { obs: o, signals: 1, packets, firstAtMs: now, lastAtMs: now });
    }
  }

  /** Close the current window: one event per pair seen. Returns the number of events emitted. */
  flush(): number {
    const now = this.now();
    const windowStartMs = this.windowStart;
    const buckets = this.buckets;
    const overflow = this.overflow;
    this.buckets = new Map();
    this.overflow = 0;
    this.windowStart = now;
    let n = 0;
    for (const b of buckets.values()) {
      const e: AuditEventInput = {
        type: 'signal',
        outcome: 'info',
        atMs: b.firstAtMs,
        details: {
          signals: b.signals,
          packets: b.packets,
          firstAtMs: b.firstAtMs,
          lastAtMs: b.lastAtMs,
          windowStartMs,
          windowMs: this.windowMs,
        },
      };
      if (b.obs.localId !== undefined) e.localId = b.obs.localId;
      if (b.obs.remoteId !== undefined) e.remoteId = b.obs.remoteId;
      if (b.obs.node !== undefined) e.node = b.obs.node;
      if (b.obs.direction !== undefined) e.direction = b.obs.direction;
      this.sink.record(e);
      n++;
    }
    if (overflow > 0) {
      this.sink.record({
        type: 'signal',
        outcome: 'info',
        reason: 'too-many-pairs',
        atMs: windowStartMs,
        details: { packets: overflow, windowStartMs, windowMs: this.windowMs },
      });
      n++;
    }
    return n;
  }

  /** Emit what is pending and stop. Idempotent. */
  close(): void {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
    this.closed = true;
  }
}
