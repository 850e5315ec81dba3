import { describe, expect, it } from 'vitest';
import { bootNowNs, bootNsToWallMs, wallMsToBootNs, type Clocks } from '../../../src/datapath/index.js';

const fixed: Clocks = { bootNowNs: () => 5_000_000_000n, wallNowMs: () => 1_700_000_000_000 };

describe('clock conversion', () => {
  it('maps wall-clock ms to boot ns relative to now', () => {
    expect(wallMsToBootNs(1_700_000_000_000 + 1500, fixed)).toBe(6_500_000_000n);
    expect(wallMsToBootNs(1_700_000_000_000 - 1000, fixed)).toBe(4_000_000_000n);
  });

  it('clamps instants before boot to 0 (already expired)', () => {
    expect(wallMsToBootNs(1_700_000_000_000 - 10_000, fixed)).toBe(0n);
  });

  it('maps boot ns back to wall-clock ms', () => {
    expect(bootNsToWallMs(6_500_000_000n, fixed)).toBe(1_700_000_001_500);
    expect(bootNsToWallMs(0n, fixed)).toBe(1_700_000_000_000 - 5000);
  });

  it('round-trips to the millisecond with the system clocks', () => {
    // Each conversion reads both clocks once; time that passes between the two reads (a busy
    // machine may preempt the process) shifts the result by at most that much, plus rounding.
    const wall = Date.now() + 3_600_000;
    const t0 = process.hrtime.bigint();
    const back = bootNsToWallMs(wallMsToBootNs(wall));
    const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(Math.abs(back - wall)).toBeLessThanOrEqual(2 + Math.ceil(elapsedMs));
  });

  it('reads a monotonic CLOCK_BOOTTIME', () => {
    const a = bootNowNs();
    const b = bootNowNs();
    expect(a).toBeGreaterThan(0n);
    expect(b).toBeGreaterThanOrEqual(a);
    // boot time is at least the process uptime
    expect(Number(a) / 1e9).toBeGreaterThanOrEqual(process.uptime() - 1);
  });
});
