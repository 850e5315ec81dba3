import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { WatchStatus } from './informer.js';

/** What the metrics read at scrape time. */
export interface KubernetesMetricsSource {
  watches(): WatchStatus[];
  /** Whole-map reconciliations of the datapath (1 after start-up). */
  fullSyncs(): number;
}

/**
 * meshauth_kubernetes_sync_* metrics: per resource the sync state (1 = synced), the time of the
 * last full sync and of the last event, watch errors; objects left out by reason; inventory
 * rebuilds; and meshauth_datapath_full_syncs_total (whole-map reconciliations, which stay at 1
 * in steady state because every change is written entry by entry).
 */
export class KubernetesMetrics {
  readonly skipped: Counter<'kind' | 'reason'>;
  readonly applyDuration: Histogram;
  readonly invalidPolicies: Counter;

  constructor(registry: Registry, src: KubernetesMetricsSource) {
    const registers = [registry];
    new Gauge({
      name: 'meshauth_kubernetes_sync_synced',
      help: 'Whether the watch of a resource is synced with the API server (1) or not (0: listing, or disconnected and retrying; enforcement continues on the last known state)',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        for (const w of src.watches()) this.set({ resource: w.resource }, w.state === 'synced' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'meshauth_kubernetes_sync_last_sync_timestamp_seconds',
      help: 'Unix time of the last full sync of a resource (list, or watch resumed)',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        for (const w of src.watches()) this.set({ resource: w.resource }, w.lastSyncAtMs / 1000);
      },
    });
    new Gauge({
      name: 'meshauth_kubernetes_sync_last_event_timestamp_seconds',
      help: 'Unix time of the last watch event applied for a resource',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        for (const w of src.watches()) this.set({ resource: w.resource }, w.lastEventAtMs / 1000);
      },
    });
    new Counter({
      name: 'meshauth_kubernetes_sync_errors_total',
      help: 'Watch or list failures of a resource (each is retried with back-off)',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        for (const w of src.watches()) this.inc({ resource: w.resource }, w.errors);
      },
    });
    new Counter({
      name: 'meshauth_datapath_full_syncs_total',
      help: 'Whole-map reconciliations of the ipcache and policy maps (start-up; changes are written entry by entry)',
      registers,
      collect() {
        this.reset();
        this.inc(src.fullSyncs());
      },
    });
    this.skipped = new Counter({
      name: 'meshauth_kubernetes_sync_skipped_total',
      help: 'Objects (or fields of them) left out of the inventory, by kind and reason',
      labelNames: ['kind', 'reason'],
      registers,
    });
    this.invalidPolicies = new Counter({
      name: 'meshauth_kubernetes_sync_invalid_policies_total',
      help: 'MutualAuthPolicy versions rejected as invalid (the last valid version stays in force)',
      registers,
    });
    this.applyDuration = new Histogram({
      name: 'meshauth_kubernetes_sync_apply_seconds',
      help: 'Time to rebuild the inventory from a batch of watch events',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
  }
}
