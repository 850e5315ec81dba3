import type { ResourceInformer } from '../../../src/kubernetes/informer.js';

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

export const flushPromises = (): Promise<void> => new Promise((r) => setImmediate(r));
