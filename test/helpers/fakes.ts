import type { AuthKey, AuthMap, AuthSignal, AuthValue, SignalSource } from '../../src/datapath/types.js';

/**
 * In-memory AuthMap with the same contract as the kernel map (tests only). Expiries are held in
 * the map's own clock (`kernelNow`, a stand-in for CLOCK_BOOTTIME) like the kernel holds them;
 * `wallNow` converts at write and read time. By default both clocks are Date.now(); a test that
 * steps one of them models a wall-clock jump.
 */
export class MemoryAuthMap implements AuthMap {
  readonly data = new Map<string, [AuthKey, AuthValue]>();
  private readonly clock = new Map<string, number>();
  failWrites = false;
  kernelNow: () => number;
  wallNow: () => number;
  /** `now` drives both clocks (a test's manual clock); default Date.now. */
  constructor(now: () => number = () => Date.now()) {
    this.kernelNow = now;
    this.wallNow = now;
  }
  private k(key: AuthKey): string {
    return `${key.localId}:${key.remoteId}:${key.remoteNode}:${key.authType}`;
  }
  lookup(key: AuthKey): AuthValue | undefined {
    const c = this.clock.get(this.k(key));
    return c === undefined ? undefined : { expiresAtMs: this.wallNow() + (c - this.kernelNow()) };
  }
  update(key: AuthKey, value: AuthValue): void {
    if (this.failWrites) throw new Error('update ma_auth: E2BIG');
    this.data.set(this.k(key), [{ ...key }, { ...value }]);
    this.clock.set(this.k(key), this.kernelNow() + (value.expiresAtMs - this.wallNow()));
  }
  delete(key: AuthKey): boolean {
    this.clock.delete(this.k(key));
    return this.data.delete(this.k(key));
  }
  *entries(): Iterable<[AuthKey, AuthValue]> {
    for (const [key] of this.data.values()) yield [key, this.lookup(key)!];
  }
  clockNowMs(): number {
    return this.kernelNow();
  }
  expiryClockMs(key: AuthKey): number | undefined {
    return this.clock.get(this.k(key));
  }
  *expiriesClockMs(): Iterable<[AuthKey, number]> {
    for (const [id, [key]] of this.data) yield [key, this.clock.get(id)!];
  }
  /** Sets an entry's expiry in the map's clock directly (another tool writing the map). */
  setExpiryClockMs(key: AuthKey, expiryClockMs: number): void {
    this.data.set(this.k(key), [
      { ...key },
      { expiresAtMs: this.wallNow() + (expiryClockMs - this.kernelNow()) },
    ]);
    this.clock.set(this.k(key), expiryClockMs);
  }
}

/** A SignalSource fed by the test. */
export class ManualSignals implements SignalSource {
  private handler: ((s: AuthSignal) => void) | undefined;
  private done: (() => void) | undefined;
  run(onSignal: (s: AuthSignal) => void): Promise<void> {
    this.handler = onSignal;
    return new Promise((resolve) => (this.done = resolve));
  }
  emit(s: Partial<AuthSignal> & Pick<AuthSignal, 'localId' | 'remoteId' | 'remoteNode'>): void {
    this.handler?.({ authType: 1, direction: 'egress', bootNs: 0n, ...s });
  }
  close(): void {
    this.done?.();
  }
}
