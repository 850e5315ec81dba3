import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { KubernetesMetrics, type WatchStatus } from '../../../src/kubernetes/index.js';

describe('KubernetesMetrics', () => {
  it('exports sync state, last sync time, errors, skips and whole-map reconciliations', async () => {
    const registry = new Registry();
    const watches: WatchStatus[] = [
      {
        resource: 'pods',
        state: 'synced',
        lastSyncAtMs: 5000,
        lastEventAtMs: 6000,
        errors: 0,
        lastError: undefined,
      },
      {
        resource: 'nodes',
        state: 'disconnected',
        lastSyncAtMs: 4000,
        lastEventAtMs: 0,
        errors: 3,
        lastError: 'x',
      },
    ];
    const full = 1;
    const m = new KubernetesMetrics(registry, { watches: () => watches, fullSyncs: () => full });
    m.skipped.inc({ kind: 'pod', reason: 'malformed-ip' });
    const text = await registry.metrics();
    expect(text).toContain('meshauth_kubernetes_sync_synced{resource="pods"} 1');
    expect(text).toContain('meshauth_kubernetes_sync_synced{resource="nodes"} 0');
    expect(text).toContain('meshauth_kubernetes_sync_last_sync_timestamp_seconds{resource="pods"} 5');
    expect(text).toContain('meshauth_kubernetes_sync_errors_total{resource="nodes"} 3');
    expect(text).toContain('meshauth_kubernetes_sync_skipped_total{kind="pod",reason="malformed-ip"} 1');
    expect(text).toContain('meshauth_datapath_full_syncs_total 1');
  });
});
