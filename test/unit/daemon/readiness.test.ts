import { describe, expect, it, vi } from 'vitest';
import { daemonReadiness } from '../../../src/daemon/operations.js';
import { SupervisedSignalSource } from '../../../src/datapath/signal-supervisor.js';
import type { AuthSignal, SignalSource } from '../../../src/datapath/types.js';

class FailingReader implements SignalSource {
  private reject: ((e: Error) => void) | undefined;
  run(_: (s: AuthSignal) => void): Promise<void> {
    return new Promise((_, reject) => (this.reject = reject));
  }
  fail(): void {
    this.reject?.(new Error('epoll_wait ma_signals: keeps failing'));
  }
  close(): void {
    this.reject?.(new Error('closed'));
  }
}

describe('daemon readiness', () => {
  it('is not ready while the signal reader is down, and ready again once it was restarted', async () => {
    vi.useFakeTimers();
    try {
      const readers: FailingReader[] = [];
      const signals = new SupervisedSignalSource({
        open: () => {
          const r = new FailingReader();
          readers.push(r);
          return r;
        },
        restartBaseMs: 1000,
        restartMaxMs: 1000,
      });
      const deps = {
        datapath: { counters: () => ({}) as never, signals },
        identity: { svid: () => undefined },
      };
      expect(daemonReadiness(deps, []).ready).toBe(false); // not started yet
      const done = signals.run(() => {});
      await vi.advanceTimersByTimeAsync(0);
      expect(daemonReadiness(deps, [])).toEqual({ ready: true });
      readers[0]!.fail();
      await vi.advanceTimersByTimeAsync(0);
      const down = daemonReadiness(deps, []);
      expect(down.ready).toBe(false);
      expect(down.reason).toMatch(/signal reader down: epoll_wait ma_signals: keeps failing/);
      await vi.advanceTimersByTimeAsync(1000);
      expect(daemonReadiness(deps, [])).toEqual({ ready: true });
      // Other causes still count.
      expect(daemonReadiness(deps, ['spiffe://demo.local/a'])).toEqual({
        ready: false,
        reason: 'no SVID for spiffe://demo.local/a',
      });
      signals.close();
      await done;
    } finally {
      vi.useRealTimers();
    }
  });
});
