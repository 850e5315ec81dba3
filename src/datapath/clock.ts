/**
 * CLOCK_BOOTTIME, the clock of bpf_ktime_get_boot_ns(), and conversion between it and wall-clock
 * milliseconds (the unit of AuthValue.expiresAtMs).
 */
import { c } from './libbpf.js';
import { DatapathError } from './errors.js';
import { systemClock } from '../time.js';

export const CLOCK_BOOTTIME = 7;

/** A source of the two clocks; injectable so conversions can be tested with fixed values. */
export interface Clocks {
  bootNowNs(): bigint;
  wallNowMs(): number;
}

/** Current CLOCK_BOOTTIME in nanoseconds (clock_gettime via FFI). */
export function bootNowNs(): bigint {
  const ts = { tv_sec: 0n as bigint | number, tv_nsec: 0n as bigint | number };
  const rc = c().clock_gettime(CLOCK_BOOTTIME, ts);
  if (rc !== 0) throw new DatapathError('clock_gettime CLOCK_BOOTTIME', 0, 'failed');
  return BigInt(ts.tv_sec) * 1_000_000_000n + BigInt(ts.tv_nsec);
}

export const systemClocks: Clocks = { bootNowNs, wallNowMs: () => systemClock.now() };

/** Wall-clock epoch ms → boot ns (0 when the instant is before boot: already expired). */
export function wallMsToBootNs(wallMs: number, clocks: Clocks = systemClocks): bigint {
  const boot = clocks.bootNowNs();
  const deltaNs = BigInt(Math.round((wallMs - clocks.wallNowMs()) * 1e6));
  const r = boot + deltaNs;
  return r < 0n ? 0n : r;
}

/** Boot ns → wall-clock epoch ms (rounded to the nearest millisecond). */
export function bootNsToWallMs(bootNs: bigint, clocks: Clocks = systemClocks): number {
  const boot = clocks.bootNowNs();
  const wall = clocks.wallNowMs();
  return wall + Math.round(Number(bootNs - boot) / 1e6);
}
