import type { Logger } from '../log.js';
import { Policy, type PolicyRule } from '../policy/index.js';
import { systemClock, type Clock } from '../time.js';
import { EventBatch } from './batch.js';
import { KeptInformer, type ResourceInformer, type WatchStatus } from './informer.js';
import { objectKey, type ObjectMeta } from './objects.js';
import type { PolicyCondition } from './policy-object.js';

/** A MutualAuthPolicy object as the policy source sees it (spec is the converter's business). */
export interface PolicyObject {
  metadata?: ObjectMeta;
  spec?: unknown;
  status?: { conditions?: Array<Partial<PolicyCondition>>; observedGeneration?: number };
}

type NewCondition = Omit<PolicyCondition, 'lastTransitionTime'>;

/** Converts one object to rules, or says why it cannot (every problem, so none is half-applied). */
export type PolicyConverter = (
  obj: PolicyObject,
) => { ok: true; rules: PolicyRule[] } | { ok: false; problems: string[] };

/** Writes what the daemon found back to the API (status condition, Events). */
export interface PolicyReporter {
  setCondition(obj: PolicyObject, condition: PolicyCondition): Promise<void>;
  event(obj: PolicyObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
}

export interface PolicySourceObserver {
  invalid?(): void;
}

export interface KubernetesPolicySourceOptions {
  informer: ResourceInformer<PolicyObject>;
  convert: PolicyConverter;
  /** Omitted: nothing is written back (tests, or daemons that leave reporting to one node). */
  reporter?: PolicyReporter;
  logger: Logger;
  observer?: PolicySourceObserver;
  /** Default systemClock. */
  clock?: Clock;
  /** Events arriving within this window are applied together. Default 5 ms. */
  batchMs?: number;
  retryMs?: number;
  maxRetryMs?: number;
}

/** Condition type written on each object (the CRD prints it as the "Valid" column). */
export const CONDITION_VALID = 'Valid';

/**
 * Policy from MutualAuthPolicy objects. Every valid object contributes all its rules (named
 * "<namespace>/<name>/<rule>"); an invalid object contributes the rules of its last valid version
 * (none if it never had one): a bad edit never half-applies and never drops enforcement that was
 * in force. Each object gets a Valid condition (True, or False with the problems) and a
 * Warning Event when it is rejected. Objects are applied in name order, so the result does not
 * depend on event order.
 */
export class KubernetesPolicySource {
  private readonly objects = new Map<string, { rules: PolicyRule[]; generation: number | undefined }>();
  private readonly kept: KeptInformer<PolicyObject>;
  private readonly clock: Clock;
  private readonly batch: EventBatch;
  private current: Policy = new Policy([], 'kubernetes policy');
  private readonly listeners = new Set<(p: Policy) => void>();
  private started = false;
  private closed = false;

  constructor(private readonly opts: KubernetesPolicySourceOptions) {
    this.clock = opts.clock ?? systemClock;
    this.batch = new EventBatch(this.clock, opts.batchMs ?? 5, () => this.flush());
    this.kept = new KeptInformer(opts.informer, {
      resource: 'mutualauthpolicies',
      clock: this.clock,
      ...(opts.retryMs !== undefined ? { retryMs: opts.retryMs } : {}),
      ...(opts.maxRetryMs !== undefined ? { maxRetryMs: opts.maxRetryMs } : {}),
      onError: (err, attempt, retryInMs) =>
        opts.logger.warn(
          {
            event: 'kubernetes_watch_failed',
            resource: 'mutualauthpolicies',
            attempt,
            retry_in_ms: retryInMs,
            reason: err instanceof Error ? err.message : String(err),
          },
          'watch of mutualauthpolicies failed; the last known policy stays in force, retrying',
        ),
    });
    const onObj = (o: PolicyObject) => this.set(o);
    opts.informer.on('add', onObj);
    opts.informer.on('update', onObj);
    opts.informer.on('delete', (o) => {
      this.objects.delete(objectKey(o));
      this.kept.touched();
      this.changed();
    });
  }

  /** Starts the informer; resolves with the policy after the first list. */
  async start(): Promise<Policy> {
    this.kept.start();
    await this.kept.synced;
    this.started = true;
    this.flush();
    return this.current;
  }

  get policy(): Policy {
    return this.current;
  }

  status(): WatchStatus {
    return this.kept.status();
  }

  /** Listens for new policies (after start). Returns the unsubscribe function. */
  onChange(l: (p: Policy) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private set(o: PolicyObject): void {
    const key = objectKey(o);
    const gen = o.metadata?.generation;
    const r = this.opts.convert(o);
    this.kept.touched();
    if (r.ok) {
      const prefix = `${key}/`;
      this.objects.set(key, {
        rules: r.rules.map((x) => ({ ...x, name: prefix + x.name })),
        generation: gen,
      });
      this.report(o, {
        type: CONDITION_VALID,
        status: 'True',
        reason: 'Accepted',
        message: `all ${r.rules.length} rule(s) valid and applied`,
      });
    } else {
      const kept = this.objects.get(key);
      const message = r.problems.join('; ');
      this.opts.observer?.invalid?.();
      this.opts.logger.warn(
        { event: 'kubernetes_policy_invalid', object: key, generation: gen, problems: r.problems },
        `MutualAuthPolicy ${key} rejected${kept ? '; its last valid version stays in force' : ''}`,
      );
      this.report(
        o,
        {
          type: CONDITION_VALID,
          status: 'False',
          reason: 'InvalidRules',
          message: kept
            ? `${message} (the version of generation ${kept.generation ?? '?'} stays in force)`
            : message,
        },
        message,
      );
    }
    this.changed();
  }

  private report(o: PolicyObject, c: NewCondition, warning?: string): void {
    const rep = this.opts.reporter;
    if (!rep) return;
    const gen = o.metadata?.generation;
    const had = o.status?.conditions?.find((x) => x.type === c.type);
    // Status writes come back as update events: write only what changed, or nothing loops.
    if (had && had.status === c.status && had.reason === c.reason && had.observedGeneration === gen) return;
    const cond: PolicyCondition = {
      ...c,
      ...(gen !== undefined ? { observedGeneration: gen } : {}),
      lastTransitionTime: new Date(this.clock.now()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
    const fail = (what: string) => (err: unknown) =>
      this.opts.logger.warn(
        { event: 'kubernetes_policy_report_failed', object: objectKey(o), what, err },
        `could not write the ${what} of MutualAuthPolicy ${objectKey(o)}`,
      );
    rep.setCondition(o, cond).catch(fail('status'));
    if (warning !== undefined) rep.event(o, 'Warning', 'InvalidRules', warning).catch(fail('event'));
  }

  private changed(): void {
    if (!this.started || this.closed) return;
    this.batch.schedule();
  }

  /** Rebuilds the policy from the current objects and tells listeners (tests call it to settle). */
  flush(): void {
    if (this.closed) return;
    this.batch.cancel();
    const rules = [...this.objects.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap(([, v]) => v.rules);
    this.current = new Policy(rules, 'kubernetes policy');
    if (this.started) for (const l of [...this.listeners]) l(this.current);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.batch.cancel();
    await this.kept.close();
  }
}
