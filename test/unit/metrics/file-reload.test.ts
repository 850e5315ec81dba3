import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FileReloadMetrics } from '../../../src/metrics/index.js';

describe('file reload metrics', () => {
  it('counts reloads by file and outcome and holds failing at 1 while the file is refused', async () => {
    const registry = new Registry();
    const m = new FileReloadMetrics(registry);
    const policy = m.follow('policy');
    const text = async (): Promise<string> => registry.metrics();
    // Followed files show up at 0 before their first reload; others do not.
    expect(await text()).toContain('meshauth_file_reload_total{file="policy",outcome="failed"} 0');
    expect(await text()).toContain('meshauth_file_reload_failing{file="policy"} 0');
    expect(await text()).not.toContain('file="inventory"');

    policy('failed', true);
    policy('failed', true);
    expect(await text()).toContain('meshauth_file_reload_total{file="policy",outcome="failed"} 2');
    expect(await text()).toContain('meshauth_file_reload_failing{file="policy"} 1');
    policy('unchanged', false);
    policy('applied', false);
    expect(await text()).toContain('meshauth_file_reload_total{file="policy",outcome="unchanged"} 1');
    expect(await text()).toContain('meshauth_file_reload_total{file="policy",outcome="applied"} 1');
    expect(await text()).toContain('meshauth_file_reload_failing{file="policy"} 0');
  });

  it('holds failing at 1 after content taken but not acted on, and clears it without counting a reload', async () => {
    const registry = new Registry();
    const inventory = new FileReloadMetrics(registry).follow('inventory');
    const text = async (): Promise<string> => registry.metrics();
    inventory('failed', true);
    expect(await text()).toContain('meshauth_file_reload_failing{file="inventory"} 1');
    inventory(undefined, false);
    expect(await text()).toContain('meshauth_file_reload_failing{file="inventory"} 0');
    expect(await text()).toContain('meshauth_file_reload_total{file="inventory",outcome="failed"} 1');
    expect(await text()).toContain('meshauth_file_reload_total{file="inventory",outcome="applied"} 0');
    expect(await text()).toContain('meshauth_file_reload_total{file="inventory",outcome="unchanged"} 0');
  });
});
