import type { Logger } from 'pino';

/**
 * What the daemon opened, in opening order, each with how to close it. Closing runs the closers
 * in reverse order, once each; a closer that throws is logged (event `shutdown_step_failed`,
 * field `step`) and the rest still run, so a failed start unwinds everything and the error that
 * made it fail is the one reported.
 */
export class Closers {
  private readonly stack: Array<{ step: string; close: () => void | Promise<void> }> = [];

  constructor(private readonly log: Logger) {}

  /** Registers `close` for something just opened; `step` names it in logs. */
  push(step: string, close: () => void | Promise<void>): void {
    this.stack.push({ step, close });
  }

  /** How many closers are registered and not yet run. */
  get size(): number {
    return this.stack.length;
  }

  /** Runs every registered closer, last opened first. Never throws. */
  async closeAll(): Promise<void> {
    for (let c = this.stack.pop(); c; c = this.stack.pop()) {
      try {
        await c.close();
      } catch (err) {
        this.log.warn({ event: 'shutdown_step_failed', step: c.step, err }, `shutdown step ${c.step} failed`);
      }
    }
  }
}
