import type { CoreV1Event, V1ObjectReference } from '@kubernetes/client-node';
import { systemClock, type Clock } from '../time.js';

/**
 * What recording needs from the API (client.ts implements it with the core/v1 Event API; tests
 * pass a fake). `patch` rejects with an error whose `code` is 404 when the Event is gone.
 */
export interface EventApi {
  /** Creates the Event; resolves with the name the server gave it (metadata.generateName). */
  create(namespace: string, event: CoreV1Event): Promise<string>;
  /** Merge-patches the Event's count and lastTimestamp. */
  patch(namespace: string, name: string, patch: { count: number; lastTimestamp: Date }): Promise<void>;
}

export interface EventRecorderOptions {
  api: EventApi;
  /** reportingComponent (and source.component): the controller's name, e.g. "meshauth.io/meshauthd". */
  component: string;
  /** reportingInstance (and source.host): this daemon's node name. */
  instance: string;
  clock?: Clock;
  /** How many distinct Events are remembered for aggregation (oldest forgotten first). Default 512. */
  maxRemembered?: number;
}

/** Events of the core/v1 API keep `message` to 1 KiB (longer ones are rejected). */
const MAX_MESSAGE = 1024;

/**
 * Records core/v1 Events about objects, aggregated the way Kubernetes' own event recorders do: an
 * Event identical to one this recorder already wrote (same object, type, reason and message) is
 * not created again; the existing Event's `count` goes up and its `lastTimestamp` moves
 * (a merge patch). Each Event names its reporter (reportingComponent, reportingInstance = the
 * node), so the Events of the daemons on different nodes stay apart. If the aggregated Event is
 * gone (Events expire, by default after an hour), the next identical one is created anew.
 * Records of the same key are serialised so that concurrent identical ones aggregate too.
 *
 * Events of a cluster-scoped object are written to the `default` namespace, as the API requires.
 */
export class EventRecorder {
  private readonly clock: Clock;
  private readonly written = new Map<string, { namespace: string; name: string; count: number }>();
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly opts: EventRecorderOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  /** Writes (or aggregates) one Event about `regarding`. Rejects with the API's error. */
  record(
    regarding: V1ObjectReference,
    type: 'Normal' | 'Warning',
    reason: string,
    action: string,
    message: string,
  ): Promise<void> {
    const namespace = regarding.namespace ?? 'default';
    const note = message.slice(0, MAX_MESSAGE);
    // The aggregation key of Kubernetes' event correlator: everything but the resourceVersion.
    const key = JSON.stringify([
      regarding.apiVersion,
      regarding.kind,
      namespace,
      regarding.name,
      regarding.uid,
      type,
      reason,
      note,
    ]);
    const prev = this.inFlight.get(key) ?? Promise.resolve();
    const next = prev
      .catch(() => undefined)
      .then(() => this.write(key, namespace, regarding, type, reason, action, note));
    this.inFlight.set(key, next);
    const done = (): void => {
      if (this.inFlight.get(key) === next) this.inFlight.delete(key);
    };
    next.then(done, done);
    return next;
  }

  private async write(
    key: string,
    namespace: string,
    regarding: V1ObjectReference,
    type: 'Normal' | 'Warning',
    reason: string,
    action: string,
    note: string,
  ): Promise<void> {
    const now = new Date(this.clock.now());
    const seen = this.written.get(key);
    if (seen) {
      try {
        await this.opts.api.patch(seen.namespace, seen.name, { count: seen.count + 1, lastTimestamp: now });
        seen.count++;
        return;
      } catch (err) {
        if ((err as { code?: unknown }).code !== 404) throw err;
        this.written.delete(key); // expired: write it anew below
      }
    }
    const { component, instance } = this.opts;
    const name = await this.opts.api.create(namespace, {
      metadata: { generateName: `${regarding.name ?? 'object'}.`, namespace },
      involvedObject: regarding,
      type,
      reason,
      action,
      message: note,
      source: { component, host: instance },
      reportingComponent: component,
      reportingInstance: instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
    this.written.delete(key);
    this.written.set(key, { namespace, name, count: 1 });
    const max = this.opts.maxRemembered ?? 512;
    for (const k of this.written.keys()) {
      if (this.written.size <= max) break;
      this.written.delete(k);
    }
  }
}
