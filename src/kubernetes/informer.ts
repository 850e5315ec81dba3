import type { Clock, Timer } from '../time.js';

/**
 * The informer as meshauth uses it: the subset of @kubernetes/client-node's Informer (list, then
 * watch from the list's resourceVersion, re-list on 410 Gone, add/update/delete from its cache's
 * diff). The real one comes from makeInformer (client.ts); tests pass in-memory fakes.
 */
export interface ResourceInformer<T> {
  on(verb: 'add' | 'update' | 'delete', cb: (obj: T) => void): void;
  on(verb: 'error' | 'connect', cb: (err?: unknown) => void): void;
  /** Lists (or resumes the watch) and starts watching; resolves once the watch is established. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Sync state of one watched resource, as status and metrics show it. */
export type SyncState = 'syncing' | 'synced' | 'disconnected';

export interface WatchStatus {
  resource: string;
  state: SyncState;
  /** Unix ms of the last full sync (list or resumed watch established), 0 = never. */
  lastSyncAtMs: number;
  /** Unix ms of the last event applied, 0 = none. */
  lastEventAtMs: number;
  /** Errors since start (connection lost, list failed, 410 Gone handled by a re-list). */
  errors: number;
  lastError: string | undefined;
}

export interface KeepWatchingOptions {
  resource: string;
  /** Time of syncs and events, and the restart timers. */
  clock: Clock;
  /** First restart delay after an error; doubles up to maxRetryMs. Default 500 ms. */
  retryMs?: number;
  maxRetryMs?: number;
  onError?(err: unknown, attempt: number, retryInMs: number): void;
  onSynced?(first: boolean): void;
}

/**
 * Keeps an informer running: starts it, and after every error restarts it with exponential
 * back-off. The informer resumes its watch from the last resourceVersion, or re-lists (on 410 Gone,
 * or when its first list failed) and reports the differences as add/update/delete: state is never
 * dropped while the API server is away. `synced()` resolves after the first successful start.
 */
export class KeptInformer<T> {
  private readonly st: WatchStatus;
  private attempt = 0;
  private timer: Timer | undefined;
  private closed = false;
  private firstSynced = false;
  private erroredSinceStart = false;
  private resolveSynced!: () => void;
  readonly synced: Promise<void>;

  constructor(
    readonly informer: ResourceInformer<T>,
    private readonly opts: KeepWatchingOptions,
  ) {
    this.st = {
      resource: opts.resource,
      state: 'syncing',
      lastSyncAtMs: 0,
      lastEventAtMs: 0,
      errors: 0,
      lastError: undefined,
    };
    this.synced = new Promise((r) => (this.resolveSynced = r));
    informer.on('error', (err) => this.onError(err));
  }

  status(): WatchStatus {
    return { ...this.st };
  }

  /** Records that an event was applied (for lastEventAtMs). */
  touched(): void {
    this.st.lastEventAtMs = this.opts.clock.now();
  }

  start(): void {
    if (this.closed) return;
    this.erroredSinceStart = false;
    if (this.st.state !== 'synced') this.st.state = 'syncing';
    this.informer.start().then(
      () => {
        if (this.closed || this.erroredSinceStart) return;
        this.st.state = 'synced';
        this.st.lastSyncAtMs = this.opts.clock.now();
        this.attempt = 0;
        const first = !this.firstSynced;
        this.firstSynced = true;
        if (first) this.resolveSynced();
        this.opts.onSynced?.(first);
      },
      (err: unknown) => this.onError(err),
    );
  }

  private onError(err: unknown): void {
    if (this.closed) return;
    this.erroredSinceStart = true;
    this.st.state = 'disconnected';
    this.st.errors++;
    this.st.lastError = err instanceof Error ? err.message : String(err);
    if (this.timer !== undefined) return; // a restart is already scheduled
    const base = this.opts.retryMs ?? 500;
    const delay = Math.min(base * 2 ** this.attempt, this.opts.maxRetryMs ?? 30_000);
    this.attempt++;
    this.opts.onError?.(err, this.attempt, delay);
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      this.start();
    }, delay);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.informer.stop();
  }
}
