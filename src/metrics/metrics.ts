import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsOptions {
  /** Also export Node process metrics (meshauth_process_*, meshauth_nodejs_*). Default true. */
  processMetrics?: boolean;
}

/** Kernel verdict counters by name (cumulative, as read from the per-CPU map). */
export type VerdictSource = () => Record<string, number | bigint>;

/** The auth manager's work: queued pairs, handshakes in flight, pairs in backoff (counts now). */
export type AuthQueueSource = () => {
  queued: number;
  inFlight: number;
  backoff: number;
  /** 1 while no handshake starts because the audit queue is behind, else 0. */
  auditBackpressure?: number;
};

type SignalOutcome =
  'queued' | 'pending' | 'live' | 'backoff' | 'queue-full' | 'unresolved' | 'unresolved-address';

/**
 * All meshauth Prometheus metrics in one registry. The daemon creates one and hands it (or the
 * observers it returns) to the parts that count things.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly handshakes: Counter<'result' | 'reason'>;
  readonly handshakeDuration: Histogram<'result'>;
  readonly authEntries: Gauge;
  readonly signalsReceived: Counter<'outcome'>;
  readonly signalsThrottled: Counter<'stage'>;
  readonly datapathVerdicts: Counter<'verdict'>;
  readonly auditQueueDepth: Gauge;
  readonly auditEventsDropped: Counter;
  readonly channelEvictions: Counter;
  readonly channelAcceptRefused: Counter<'reason'>;
  readonly responderAuditBackpressure: Counter<'outcome' | 'path'>;
  readonly authQueue: Gauge<'state'>;
  readonly authWorkDropped: Counter<'reason'>;
  readonly synReplayed: Counter;
  readonly synNotReplayed: Counter<'reason'>;
  readonly svidExpiry: Gauge<'spiffe_id'>;
  readonly mirrorRepairs: Counter<'reason'>;
  readonly entriesRevoked: Counter<'trigger'>;
  readonly witnessHeadsRefused: Counter<'reason' | 'recorded'>;
  readonly wallClockSteps: Counter<'direction'>;
  readonly wallClockBehind: Gauge;
  private verdictSource: VerdictSource | undefined;
  private authQueueSource: AuthQueueSource | undefined;
  private readonly notAfter = new Map<string, number>();
  private droppedSeen = 0;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    this.handshakes = new Counter({
      name: 'meshauth_handshakes_total',
      help: 'Authentication handshakes by result (success, failure) and reason code',
      labelNames: ['result', 'reason'],
      registers,
    });
    this.handshakeDuration = new Histogram({
      name: 'meshauth_handshake_duration_seconds',
      help: 'Duration of authentication handshakes, connect to verified result',
      labelNames: ['result'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.authEntries = new Gauge({
      name: 'meshauth_auth_entries',
      help: 'Live entries in the auth map',
      registers,
    });
    this.mirrorRepairs = new Counter({
      name: 'meshauth_auth_mirror_repairs_total',
      help: 'Corrections of the in-memory auth mirror from the kernel auth map, by reason (kernel-missing, kernel-extra, expiry-differs, kernel-expired)',
      labelNames: ['reason'],
      registers,
    });
    this.entriesRevoked = new Counter({
      name: 'meshauth_auth_entries_revoked_total',
      help: 'Auth entries deleted because an authority they relied on left the trust bundle, by trigger (bundle-changed, reauth-failed)',
      labelNames: ['trigger'],
      registers,
    });
    this.wallClockSteps = new Counter({
      name: 'meshauth_wall_clock_steps_total',
      help: 'Steps of the wall clock against the monotonic clock (1 s or more), by direction (forward: followed; backward: not followed until restart)',
      labelNames: ['direction'],
      registers,
    });
    this.wallClockBehind = new Gauge({
      name: 'meshauth_wall_clock_behind_seconds',
      help: 'How far the wall clock is behind the time meshauthd goes by (it does not follow a step back; 0 normally)',
      registers,
    });
    this.signalsReceived = new Counter({
      name: 'meshauth_signals_received_total',
      help: 'Auth-required signals from the datapath, by what the daemon did with them (queued, pending, live, backoff, queue-full, unresolved; unresolved-address: a pod address not known yet)',
      labelNames: ['outcome'],
      registers,
    });
    // collect() runs with `this` bound to the metric; these arrows keep the Metrics instance
    const readVerdicts = (): Record<string, number | bigint> | undefined => {
      const src = this.verdictSource;
      if (!src) return undefined;
      try {
        return src();
      } catch {
        return undefined;
      }
    };
    this.signalsThrottled = new Counter({
      name: 'meshauth_signals_throttled_total',
      help: 'Auth-required signals the datapath did not send: stage="kernel" (same pair signalled within the throttle interval), stage="ringbuf_full" (ring buffer full); read from the kernel counters at scrape time',
      labelNames: ['stage'],
      registers,
      collect() {
        const counts = readVerdicts();
        if (!counts) return;
        this.reset();
        this.inc({ stage: 'kernel' }, Number(counts['signal_throttled'] ?? 0));
        this.inc({ stage: 'ringbuf_full' }, Number(counts['signal_ringbuf_full'] ?? 0));
      },
    });
    this.datapathVerdicts = new Counter({
      name: 'meshauth_datapath_verdicts_total',
      help: 'Datapath packet verdicts (read from the kernel counters at scrape time)',
      labelNames: ['verdict'],
      registers,
      collect() {
        const counts = readVerdicts();
        if (!counts) return;
        this.reset();
        for (const [verdict, v] of Object.entries(counts)) this.inc({ verdict }, Number(v));
      },
    });
    this.witnessHeadsRefused = new Counter({
      name: 'meshauth_witness_heads_refused_total',
      help: 'Signed audit heads this witness refused, by reason; recorded="false" = over the per-submitter refusal-row limit, counted only in a summary row',
      labelNames: ['reason', 'recorded'],
      registers,
    });
    const readAuthQueue = () => this.authQueueSource?.();
    this.authQueue = new Gauge({
      name: 'meshauth_auth_queue',
      help: 'Pairs the auth manager holds, by state (queued: waiting for a handshake slot, bounded by auth.queueSize, a signal beyond it is counted as meshauth_signals_received_total{outcome="queue-full"}; in_flight: handshakes running, bounded by auth.maxConcurrent; backoff: pairs waiting to retry after a failure; audit_backpressure: 1 while no handshake starts because the audit queue is above its high-water mark, else 0)',
      labelNames: ['state'],
      registers,
      collect() {
        const q = readAuthQueue();
        if (!q) return;
        this.set({ state: 'queued' }, q.queued);
        this.set({ state: 'in_flight' }, q.inFlight);
        this.set({ state: 'backoff' }, q.backoff);
        this.set({ state: 'audit_backpressure' }, q.auditBackpressure ?? 0);
      },
    });
    this.authWorkDropped = new Counter({
      name: 'meshauth_auth_work_dropped_total',
      help: 'Retries, re-authentications and pre-authentications dropped because the auth queue was full, by reason (a signal dropped so is meshauth_signals_received_total{outcome="queue-full"})',
      labelNames: ['reason'],
      registers,
    });
    this.auditQueueDepth = new Gauge({
      name: 'meshauth_audit_queue_depth',
      help: 'Audit events waiting to be written',
      registers,
    });
    this.auditEventsDropped = new Counter({
      name: 'meshauth_audit_events_dropped_total',
      help: 'Audit events lost because the queue was full or a write failed (each loss is also a gap event)',
      registers,
    });
    this.channelEvictions = new Counter({
      name: 'meshauth_channel_evictions_total',
      help: 'Node channels closed to stay under auth.channel.maxChannels (least recently used first); their peers dial again on the next pair',
      registers,
    });
    this.channelAcceptRefused = new Counter({
      name: 'meshauth_channel_accept_refused_total',
      help: 'Connections to the node channel port closed at accept, before any TLS, by reason (too-many-connections: the listener holds its limit of connections still opening; too-many-connections-from-address: that source address does; rate-limited: its token bucket is empty)',
      labelNames: ['reason'],
      registers,
    });
    this.responderAuditBackpressure = new Counter({
      name: 'meshauth_auth_responder_audit_backpressure_total',
      help: "Pairs initiated by peers (path: handshake = per-pair server, channel = node channel pair message) whose entry waited because this node's audit queue was above its high-water mark, by outcome (paced: written once it drained; refused: not drained before the deadline, nothing written, reason audit-busy)",
      labelNames: ['outcome', 'path'],
      registers,
    });
    this.synReplayed = new Counter({
      name: 'meshauth_syn_replayed_total',
      help: 'Dropped SYNs of cold pairs sent again once both entries existed (datapath.synReplay)',
      registers,
    });
    this.synNotReplayed = new Counter({
      name: 'meshauth_syn_not_replayed_total',
      help: 'Captured SYNs not sent again, by reason (expired, auth-failed, peer-not-written, replaced, table-full, malformed, send-failed)',
      labelNames: ['reason'],
      registers,
    });
    const notAfter = this.notAfter;
    this.svidExpiry = new Gauge({
      name: 'meshauth_svid_expiry_seconds',
      help: 'Seconds until the X509-SVID held for a SPIFFE ID expires (negative when expired)',
      labelNames: ['spiffe_id'],
      registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const [id, na] of notAfter) this.set({ spiffe_id: id }, (na - now) / 1000);
      },
    });
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'meshauth_' });
  }

  /** Where meshauth_datapath_verdicts_total reads the kernel counters from. */
  setVerdictSource(fn: VerdictSource | undefined): void {
    this.verdictSource = fn;
  }

  /** Where meshauth_auth_queue reads the auth manager's queue from. */
  setAuthQueueSource(fn: AuthQueueSource | undefined): void {
    this.authQueueSource = fn;
  }

  recordHandshake(result: 'success' | 'failure', reason: string, durationMs: number): void {
    this.handshakes.inc({ result, reason });
    this.handshakeDuration.observe({ result }, durationMs / 1000);
  }

  /** Track the expiry of the SVID held for spiffeId (call again on rotation). */
  setSvidNotAfter(spiffeId: string, notAfterMs: number): void {
    this.notAfter.set(spiffeId, notAfterMs);
  }

  removeSvid(spiffeId: string): void {
    this.notAfter.delete(spiffeId);
  }

  /** Observer for the auth manager (src/auth AuthObserver). */
  authObserver(): {
    signal(outcome: SignalOutcome): void;
    handshake(result: 'success' | 'failure', reason: string, durationMs: number): void;
    entries(count: number): void;
  } {
    return {
      signal: (outcome) => this.signalsReceived.inc({ outcome }),
      handshake: (result, reason, durationMs) => this.recordHandshake(result, reason, durationMs),
      entries: (count) => this.authEntries.set(count),
    };
  }

  /** Observer for the witness (WitnessObserver). */
  witnessObserver(): { refused(reason: string, recorded: boolean): void } {
    return {
      refused: (reason, recorded) => this.witnessHeadsRefused.inc({ reason, recorded: String(recorded) }),
    };
  }

  /** Observer for the audit writer (AuditWriterObserver). */
  auditObserver(): { queueDepth(depth: number): void; dropped(total: number): void } {
    return {
      queueDepth: (d) => this.auditQueueDepth.set(d),
      dropped: (total) => {
        if (total > this.droppedSeen) {
          this.auditEventsDropped.inc(total - this.droppedSeen);
          this.droppedSeen = total;
        }
      },
    };
  }

  /** Exposition text (what /metrics serves). */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
