import type { AuthKey, AuthMap, AuthSignal, AuthValue, SignalSource } from '../../src/datapath/types.js';

/** In-memory AuthMap with the same contract as the kernel map (tests only). */
export class MemoryAuthMap implements AuthMap {
  readonly data = new Map<string, [AuthKey, AuthValue]>();
  failWrites = false;
  private k(key: AuthKey): string {
    return `${key.localId}:${key.remoteId}:${key.remoteNode}:${key.authType}`;
  }
  lookup(key: AuthKey): AuthValue | undefined {
    return this.data.get(this.k(key))?.[1];
  }
  update(key: AuthKey, value: AuthValue): void {
    if (this.failWrites) throw new Error('update ma_auth: E2BIG');
    this.data.set(this.k(key), [{ ...key }, { ...value }]);
  }
  delete(key: AuthKey): boolean {
    return this.data.delete(this.k(key));
  }
  *entries(): Iterable<[AuthKey, AuthValue]> {
    yield* this.data.values();
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
