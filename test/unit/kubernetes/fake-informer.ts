import type { ResourceInformer, Timers } from '../../../src/kubernetes/informer.js';

/** In-memory informer: the test drives list results, events and errors. */
export class FakeInformer<T> implements ResourceInformer<T> {
  private readonly cbs = new Map<string, Array<(x: never) => void>>();
  starts = 0;
  stops = 0;
  /** What the next start() does: resolve (list ok) or fail through the error callback. */
  nextStart: 'ok' | 'error' = 'ok';
  private pendingStart: (() => void) | undefined;
  /** When true, start() waits for release(). */
  hold = false;

  on(verb: string, cb: (x: never) => void): void {
    const l = this.cbs.get(verb) ?? [];
    l.push(cb);
    this.cbs.set(verb, l);
  }

  emit(verb: 'add' | 'update' | 'delete', obj: T): void;
  emit(verb: 'error' | 'connect', err?: unknown): void;
  emit(verb: string, x?: unknown): void {
    for (const cb of this.cbs.get(verb) ?? []) cb(x as never);
  }

  start(): Promise<void> {
    this.starts++;
    return new Promise((resolve) => {
      const finish = (): void => {
        if (this.nextStart === 'error') this.emit('error', new Error('connect ECONNREFUSED'));
        resolve();
      };
      if (this.hold) this.pendingStart = finish;
      else finish();
    });
  }

  release(): void {
    const p = this.pendingStart;
    this.pendingStart = undefined;
    p?.();
  }

  stop(): Promise<void> {
    this.stops++;
    return Promise.resolve();
  }
}

/** Manual clock and timers. */
export class FakeTimers implements Timers {
  t = 1_000_000;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  /** Advances the clock, running due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.pending].filter(([, p]) => p.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.pending.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
  }
  get scheduled(): number {
    return this.pending.size;
  }
}

export const flushPromises = (): Promise<void> => new Promise((r) => setImmediate(r));
