import type { Logger } from 'pino';
import type { IdentityEvent } from './source.js';

/**
 * The rotation event stream of an identity source: listeners are called in order, and one that
 * throws is logged without keeping the others from the event.
 */
export class IdentityEvents {
  private readonly listeners = new Set<(e: IdentityEvent) => void>();

  constructor(private readonly logger?: Logger) {}

  subscribe(listener: (event: IdentityEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(e: IdentityEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.logger?.error({ event: 'identity_listener_failed', err }, 'identity event listener threw');
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}
