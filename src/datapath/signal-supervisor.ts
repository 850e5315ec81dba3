/**
 * Keeps the auth-required signal stream running: when the ring-buffer reader stops on its own
 * (an error, or an end nobody asked for) a new reader is opened after a capped exponential
 * backoff. While no reader runs the supervisor reports itself down, so readiness can fail.
 */
import { backoffMs } from '../sync.js';
import type { AuthSignal, SignalSource } from './types.js';

/** Timers the supervisor uses; injected so tests drive the backoff with fake time. */
export interface SupervisorTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface SignalSupervisorOptions {
  /** Opens a fresh reader (e.g. `() => datapath.signals()`). May throw; that counts as a failure. */
  open: () => SignalSource;
  /** First restart delay, ms. Default 100. */
  restartBaseMs?: number;
  /** Largest restart delay, ms. Default 10 000. */
  restartMaxMs?: number;
  /** A reader that ran this long before it stopped resets the backoff, ms. Default 60 000. */
  stableAfterMs?: number;
  /** Called on every stop and every restart (logs, metrics). Must not throw (it is caught). */
  onStateChange?: (e: SignalReaderEvent) => void;
  now?: () => number;
  timers?: SupervisorTimers;
}

export type SignalReaderEvent =
  | { type: 'stopped'; error: string; restarts: number; retryInMs: number }
  | { type: 'restarted'; restarts: number }
  | { type: 'open-failed'; error: string; restarts: number; retryInMs: number };

const systemTimers: SupervisorTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * A SignalSource over a series of readers. `run()` resolves only after close(); a reader that
 * ends or fails before that is replaced. `up` is false from the moment a reader stops until its
 * replacement runs.
 */
export class SupervisedSignalSource implements SignalSource {
  private current: SignalSource | undefined;
  private closed = false;
  private running = false;
  private attempt = 0;
  private retryTimer: unknown;
  private wake: (() => void) | undefined;
  private isUp = false;
  private lastError: string | undefined;
  /** How many times a reader was replaced. */
  restarts = 0;
  private readonly now: () => number;
  private readonly timers: SupervisorTimers;

  constructor(private readonly opts: SignalSupervisorOptions) {
    this.now = opts.now ?? Date.now;
    this.timers = opts.timers ?? systemTimers;
  }

  /** True while a reader is running. */
  get up(): boolean {
    return this.isUp;
  }

  /** Readiness view: ready while a reader runs, else why not. */
  health(): { ready: boolean; reason?: string } {
    if (this.isUp) return { ready: true };
    if (this.closed) return { ready: false, reason: 'signal reader closed' };
    return {
      ready: false,
      reason: `signal reader down${this.lastError ? `: ${this.lastError}` : ''} (restarts: ${this.restarts})`,
    };
  }

  async run(onSignal: (signal: AuthSignal) => void): Promise<void> {
    if (this.running) throw new Error('signal supervisor: run() is already active');
    this.running = true;
    try {
      while (!this.closed) {
        let source: SignalSource;
        try {
          source = this.opts.open();
        } catch (err) {
          const delay = this.nextDelay(false);
          this.lastError = messageOf(err);
          this.emit({
            type: 'open-failed',
            error: this.lastError,
            restarts: this.restarts,
            retryInMs: delay,
          });
          await this.pause(delay);
          continue;
        }
        if (this.closed) {
          source.close();
          break;
        }
        this.current = source;
        if (this.restarts > 0 || this.attempt > 0) this.emit({ type: 'restarted', restarts: this.restarts });
        this.isUp = true;
        const startedAt = this.now();
        let error: string;
        try {
          await source.run(onSignal);
          error = 'reader ended';
        } catch (err) {
          error = messageOf(err);
        } finally {
          this.isUp = false;
          this.current = undefined;
        }
        if (this.closed) break;
        source.close();
        this.lastError = error;
        const delay = this.nextDelay(this.now() - startedAt >= (this.opts.stableAfterMs ?? 60_000));
        this.restarts++;
        this.emit({ type: 'stopped', error, restarts: this.restarts, retryInMs: delay });
        await this.pause(delay);
      }
    } finally {
      this.running = false;
      this.isUp = false;
    }
  }

  /** Stops the current reader and any pending restart; run() resolves. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer !== undefined) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.current?.close();
    this.wake?.();
  }

  private nextDelay(stable: boolean): number {
    if (stable) this.attempt = 0;
    const d = backoffMs(this.attempt, this.opts.restartBaseMs ?? 100, this.opts.restartMaxMs ?? 10_000);
    this.attempt++;
    return d;
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
      this.retryTimer = this.timers.setTimeout(() => {
        this.retryTimer = undefined;
        this.wake?.();
      }, ms);
    });
  }

  private emit(e: SignalReaderEvent): void {
    try {
      this.opts.onStateChange?.(e);
    } catch {
      // observers must not stop the supervisor
    }
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
