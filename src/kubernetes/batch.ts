import type { Clock, Timer } from '../time.js';

/**
 * Coalesces a burst of informer events into one application: the first change arms a timer of
 * `ms` milliseconds, later changes while it is armed add nothing, and when it fires `apply` runs
 * once for everything received so far. The owner calls cancel() when it applies early (a settle
 * point, start-up) or closes. Shared by the inventory and policy sources.
 */
export class EventBatch {
  private timer: Timer | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly ms: number,
    private readonly apply: () => void,
  ) {}

  /** Arms the timer unless it is armed already. */
  schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.apply();
    }, this.ms);
  }

  /** Disarms the timer, if armed. Idempotent. */
  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }
}
