import { afterEach, describe, expect, it, vi } from 'vitest';
import { SupervisedSignalSource, type SignalReaderEvent } from '../../../src/datapath/signal-supervisor.js';
import type { AuthSignal, SignalSource } from '../../../src/datapath/types.js';

/** A reader the test stops (fails or ends) at will. */
class FakeReader implements SignalSource {
  closed = false;
  private resolve: (() => void) | undefined;
  private reject: ((e: Error) => void) | undefined;
  handler: ((s: AuthSignal) => void) | undefined;
  run(onSignal: (s: AuthSignal) => void): Promise<void> {
    this.handler = onSignal;
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
  fail(msg: string): void {
    this.reject?.(new Error(msg));
  }
  end(): void {
    this.resolve?.();
  }
  close(): void {
    this.closed = true;
    this.resolve?.();
  }
}

const sig: AuthSignal = {
  localId: 1,
  remoteId: 2,
  remoteNode: 3,
  authType: 1,
  direction: 'egress',
  bootNs: 1n,
};

afterEach(() => {
  vi.useRealTimers();
});

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('SupervisedSignalSource', () => {
  it('restarts a reader that failed, after a backoff, and is not ready meanwhile', async () => {
    vi.useFakeTimers();
    const readers: FakeReader[] = [];
    const events: SignalReaderEvent[] = [];
    const sup = new SupervisedSignalSource({
      open: () => {
        const r = new FakeReader();
        readers.push(r);
        return r;
      },
      restartBaseMs: 1000,
      restartMaxMs: 8000,
      onStateChange: (e) => events.push(e),
    });
    const got: AuthSignal[] = [];
    const done = sup.run((s) => got.push(s));
    await settle();
    expect(sup.health()).toEqual({ ready: true });
    readers[0]!.handler!(sig);
    readers[0]!.fail('epoll_wait ma_signals: keeps failing');
    await settle();
    expect(sup.up).toBe(false);
    const h = sup.health();
    expect(h.ready).toBe(false);
    expect(h.reason).toContain('keeps failing');
    expect(readers).toHaveLength(1);
    expect(readers[0]!.closed).toBe(true);
    // Full jitter keeps the first delay in [base/2, base].
    await vi.advanceTimersByTimeAsync(1000);
    await settle();
    expect(readers).toHaveLength(2);
    expect(sup.health()).toEqual({ ready: true });
    readers[1]!.handler!(sig);
    expect(got).toHaveLength(2);
    expect(events.map((e) => e.type)).toEqual(['stopped', 'restarted']);
    sup.close();
    await done;
    expect(readers[1]!.closed).toBe(true);
  });

  it('backs off exponentially while opening keeps failing, and treats an unasked end as a stop', async () => {
    vi.useFakeTimers();
    let opens = 0;
    let readers = 0;
    const delays: number[] = [];
    const sup = new SupervisedSignalSource({
      open: () => {
        opens++;
        if (opens <= 3) throw new Error('ring_buffer__new: EBADF');
        readers++;
        const r = new FakeReader();
        // The first real reader ends by itself at once.
        if (readers === 1) queueMicrotask(() => r.end());
        return r;
      },
      restartBaseMs: 100,
      restartMaxMs: 400,
      onStateChange: (e) => {
        if (e.type !== 'restarted') delays.push(e.retryInMs);
      },
    });
    const done = sup.run(() => {});
    await settle();
    expect(sup.up).toBe(false);
    for (let i = 0; i < 6 && readers < 2; i++) {
      await vi.advanceTimersByTimeAsync(400);
      await settle();
    }
    expect(readers).toBe(2);
    expect(sup.up).toBe(true);
    // Attempt n waits within [exp/2, exp], exp = min(400, 100 * 2^n).
    expect(delays).toHaveLength(4);
    const caps = [100, 200, 400, 400];
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(caps[i]! / 2);
      expect(d).toBeLessThanOrEqual(caps[i]!);
    });
    sup.close();
    await done;
    expect(sup.health().ready).toBe(false);
  });

  it('close() during a backoff ends run() without opening another reader', async () => {
    vi.useFakeTimers();
    let opens = 0;
    const sup = new SupervisedSignalSource({
      open: () => {
        opens++;
        const r = new FakeReader();
        queueMicrotask(() => r.fail('boom'));
        return r;
      },
      restartBaseMs: 10_000,
    });
    const done = sup.run(() => {});
    await settle();
    expect(opens).toBe(1);
    sup.close();
    await done;
    await vi.advanceTimersByTimeAsync(20_000);
    expect(opens).toBe(1);
    await expect(sup.run(() => {})).resolves.toBeUndefined();
  });
});
