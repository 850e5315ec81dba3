import type { Logger } from '../log.js';
import { systemClock, type Clock, type Timer } from '../time.js';
import { ANNOTATIONS } from './objects.js';

/** What publishing needs from the API (KubernetesClient fits; tests pass a fake). */
export interface NodeAnnotator {
  nodeAnnotations(name: string): Promise<Record<string, string>>;
  annotateNode(name: string, annotations: Record<string, string | null>): Promise<void>;
}

export interface PublishNodeKeyOptions {
  api: NodeAnnotator;
  nodeName: string;
  publicKey: string;
  /** WireGuard UDP port, published when given. */
  wireguardPort?: number;
  logger: Logger;
  /** Retry timers. Default systemClock. */
  clock?: Clock;
  /** Retry delay after a failed write, doubled up to 30 s. Default 1 s. */
  retryMs?: number;
}

/** A running publication; close() stops retrying. */
export interface NodeKeyPublication {
  /** Resolves once the annotation holds the key (it may never, if the API refuses). */
  readonly published: Promise<void>;
  close(): void;
}

/**
 * Publishes this node's WireGuard public key (and port) as annotations of its own Node object, so
 * peers configure it from the API instead of from a copied file. Only this node's object is
 * patched (a merge patch of the two annotations). Failures are retried with back-off; an
 * annotation already holding the key is left alone.
 */
export function publishNodeKey(opts: PublishNodeKeyOptions): NodeKeyPublication {
  const clock = opts.clock ?? systemClock;
  const want: Record<string, string> = { [ANNOTATIONS.wireguardPublicKey]: opts.publicKey };
  if (opts.wireguardPort !== undefined) want[ANNOTATIONS.wireguardPort] = String(opts.wireguardPort);
  let closed = false;
  let timer: Timer | undefined;
  let attempt = 0;
  let resolve!: () => void;
  const published = new Promise<void>((r) => (resolve = r));
  const run = async (): Promise<void> => {
    if (closed) return;
    try {
      const have = await opts.api.nodeAnnotations(opts.nodeName);
      const diff = Object.fromEntries(Object.entries(want).filter(([k, v]) => have[k] !== v));
      if (Object.keys(diff).length > 0) await opts.api.annotateNode(opts.nodeName, diff);
      opts.logger.info(
        { event: 'wireguard_key_published', node: opts.nodeName, changed: Object.keys(diff).length > 0 },
        'WireGuard public key published on the Node object',
      );
      resolve();
    } catch (err) {
      if (closed) return;
      const delay = Math.min((opts.retryMs ?? 1000) * 2 ** attempt++, 30_000);
      opts.logger.warn(
        { event: 'wireguard_key_publish_failed', node: opts.nodeName, retry_in_ms: delay, err },
        'could not publish the WireGuard public key on the Node object; retrying',
      );
      timer = clock.setTimeout(() => void run(), delay);
    }
  };
  void run();
  return {
    published,
    close() {
      closed = true;
      timer?.cancel();
    },
  };
}
