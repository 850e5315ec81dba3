/**
 * The daemon's file sources (openSources with inventory.source and policy.source `file`) against
 * real files and real inotify watches: the policy and inventory files are edited in place,
 * replaced by rename, corrupted, deleted and swapped as a Kubernetes ConfigMap volume is updated;
 * policy.current, the policy listeners and the log events follow, and a bad file never replaces
 * the last good policy.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Registry } from 'prom-client';
import { loadConfig, watchFile } from '../../../src/config/index.js';
import { openSources, type DaemonSources } from '../../../src/daemon/sources.js';
import { configMapVolume } from '../../helpers/configmap-volume.js';
import { API, twoNodeInventory, WEB } from '../../helpers/daemon-node.js';

const DB = 'spiffe://demo.local/ns/demo/sa/db';

const INVENTORY = twoNodeInventory([API]);
const ONE_RULE = stringify({ rules: [{ name: 'web-api', from: WEB, to: API }] });
const TWO_RULES = stringify({
  rules: [
    { name: 'web-api', from: WEB, to: API },
    { name: 'api-db', from: API, to: DB, mode: 'permissive' },
  ],
});

interface Logged {
  event?: string;
  file?: string;
  rules?: number;
  reason?: string;
  workloads?: number;
}

let dir: string;
let sources: DaemonSources | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-sources-'));
});

afterEach(async () => {
  await sources?.close();
  sources = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function open(inventoryFile: string, policyFile: string) {
  const configFile = join(dir, 'config.yaml');
  writeFileSync(
    configFile,
    stringify({
      node: 'node-a',
      // Required settings the sources do not read.
      datapath: { attach: [{ type: 'cgroup', path: '/sys/fs/cgroup' }] },
      inventory: { file: inventoryFile },
      policy: { file: policyFile },
    }),
  );
  const config = loadConfig({ file: configFile, env: {} });
  const logged: Logged[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l) as Logged) });
  sources = await openSources(config, logger);
  let policyChanges = 0;
  sources.onPolicyChange(() => policyChanges++);
  const events = (prefix: string) => logged.map((l) => l.event).filter((e) => e?.startsWith(prefix));
  return { sources, logged, events, policyChanges: () => policyChanges };
}

describe('file sources reload', () => {
  it('follows policy file edits, renames, corruption and deletion, keeping the last good policy', async () => {
    const inventoryFile = join(dir, 'inventory.yaml');
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(inventoryFile, stringify(INVENTORY));
    writeFileSync(policyFile, ONE_RULE);
    const s = await open(inventoryFile, policyFile);
    const first = s.sources.policy.current;
    expect(first.rules.map((r) => r.name)).toEqual(['web-api']);

    // Edited in place.
    writeFileSync(policyFile, TWO_RULES);
    await expect.poll(() => s.sources.policy.current.rules.length, { timeout: 10_000 }).toBe(2);
    expect(s.sources.policy.current.pairMode(DB, API)).toBe('permissive');
    expect(s.policyChanges()).toBe(1);
    expect(s.logged.filter((l) => l.event === 'policy_reloaded')).toEqual([
      expect.objectContaining({ file: policyFile, rules: 2 }),
    ]);

    // Corrupted (YAML syntax): the two-rule policy stays, the failure names file and reason.
    const good = s.sources.policy.current;
    writeFileSync(policyFile, 'rules:\n  - name: x\n   from: y\n');
    await expect.poll(() => s.events('policy_reload_failed').length, { timeout: 10_000 }).toBeGreaterThan(0);
    const failed = s.logged.filter((l) => l.event === 'policy_reload_failed').at(-1);
    expect(failed?.file).toBe(policyFile);
    expect(failed?.reason).toMatch(
      new RegExp(`^policy ${policyFile}: line 3, column \\d+: YAML syntax error`),
    );
    expect(s.sources.policy.current).toBe(good);

    // Deleted: still the last good policy (not "no policy").
    const before = s.events('policy_reload_failed').length;
    rmSync(policyFile);
    await expect
      .poll(() => s.logged.filter((l) => l.event === 'policy_reload_failed').at(-1)?.reason, {
        timeout: 10_000,
      })
      .toBe(`policy ${policyFile}: cannot read: file not found`);
    expect(s.events('policy_reload_failed').length).toBeGreaterThan(before);
    expect(s.sources.policy.current).toBe(good);
    expect(s.sources.policy.current.pairMode(WEB, API)).toBe('enforce');

    // Schema error in a file put back by rename (atomic writer): refused as well.
    writeFileSync(
      `${policyFile}.tmp`,
      stringify({ rules: [{ name: 'x', from: WEB, to: API, mode: 'sometimes' }] }),
    );
    renameSync(`${policyFile}.tmp`, policyFile);
    await expect
      .poll(() => s.logged.filter((l) => l.event === 'policy_reload_failed').at(-1)?.reason, {
        timeout: 10_000,
      })
      .toMatch(/rules\[0\]\.mode: /);
    expect(s.sources.policy.current).toBe(good);
    expect(s.policyChanges()).toBe(1);

    // Fixed by rename: taken, listeners run again.
    writeFileSync(`${policyFile}.tmp`, ONE_RULE);
    renameSync(`${policyFile}.tmp`, policyFile);
    await expect.poll(() => s.sources.policy.current.rules.length, { timeout: 10_000 }).toBe(1);
    expect(s.policyChanges()).toBe(2);
    expect(s.logged.filter((l) => l.event === 'policy_reloaded').at(-1)).toEqual(
      expect.objectContaining({ file: policyFile, rules: 1 }),
    );
    // The inventory file was not touched: no inventory event.
    expect(s.events('inventory_')).toEqual([]);
  });

  it('follows ConfigMap volume updates (..data symlink swap) of both the policy and the inventory', async () => {
    const cm = configMapVolume(join(dir, 'config'), 'policy.yaml', ONE_RULE);
    const inv = configMapVolume(join(dir, 'inventory'), 'inventory.yaml', stringify(INVENTORY));
    const s = await open(inv.file, cm.file);
    expect(s.sources.policy.current.rules).toHaveLength(1);
    let inventoryChanges = 0;
    s.sources.inventory.onChange(() => inventoryChanges++);

    cm.update(TWO_RULES);
    await expect.poll(() => s.sources.policy.current.rules.length, { timeout: 10_000 }).toBe(2);
    expect(s.policyChanges()).toBe(1);
    expect(s.events('policy_')).toEqual(['policy_reloaded']);

    // A bad ConfigMap update keeps the policy; the next good one is taken.
    const good = s.sources.policy.current;
    cm.update('rules: [');
    await expect.poll(() => s.events('policy_reload_failed').length, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(s.sources.policy.current).toBe(good);
    cm.update(ONE_RULE);
    await expect.poll(() => s.sources.policy.current.rules.length, { timeout: 10_000 }).toBe(1);
    expect(s.policyChanges()).toBe(2);

    const moved = structuredClone(INVENTORY);
    (moved.workloads[1] as { ips: string[] }).ips = ['10.10.2.12'];
    inv.update(stringify(moved));
    await expect
      .poll(() => s.sources.inventory.workloadByIp('10.10.2.12')?.spiffeId, { timeout: 10_000 })
      .toBe(API);
    expect(s.sources.inventory.workloadByIp('10.10.2.10')).toBeUndefined();
    expect(inventoryChanges).toBe(1);
    expect(s.logged.filter((l) => l.event === 'inventory_reloaded')).toEqual([
      expect.objectContaining({ file: inv.file, workloads: 2 }),
    ]);
  });

  it('refuses an inventory without this node before swapping it, then logs the fixed file as good', async () => {
    const inventoryFile = join(dir, 'inventory.yaml');
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(inventoryFile, stringify(INVENTORY));
    writeFileSync(policyFile, ONE_RULE);
    const s = await open(inventoryFile, policyFile);
    const registry = new Registry();
    s.sources.registerMetrics(registry, () => 0);
    let inventoryChanges = 0;
    s.sources.inventory.onChange(() => inventoryChanges++);
    const before = s.sources.inventory.data;

    // Valid on its own, but start-up refuses it (node-a, this node, is not listed).
    const withoutThisNode = {
      nodes: [INVENTORY.nodes[1]],
      workloads: [INVENTORY.workloads[1]],
    };
    writeFileSync(inventoryFile, stringify(withoutThisNode));
    await expect.poll(() => s.events('inventory_reload_failed').length, { timeout: 10_000 }).toBe(1);
    const failed = s.logged.find((l) => l.event === 'inventory_reload_failed') as Record<string, unknown>;
    expect(failed['file']).toBe(inventoryFile);
    expect(failed['reason']).toMatch(/node: "node-a" is not in inventory .*\(nodes: node-b\)$/);
    expect(failed['err']).toBeUndefined();
    // The old inventory stays: node-a and its workload are still known, no listener ran.
    expect(s.sources.inventory.data).toBe(before);
    expect(s.sources.inventory.node('node-a')?.address).toBe('127.0.0.1');
    expect(s.sources.inventory.workloadByIp('10.10.1.10')?.spiffeId).toBe(WEB);
    expect(inventoryChanges).toBe(0);
    expect(s.events('inventory_reloaded')).toEqual([]);
    const metrics = await registry.metrics();
    expect(metrics).toContain('meshauth_file_reload_total{file="inventory",outcome="failed"} 1');
    expect(metrics).toContain('meshauth_file_reload_failing{file="inventory"} 1');
    expect(metrics).toContain('meshauth_file_reload_failing{file="policy"} 0');

    // Put back as it was: no change, but the log and the gauge say the file is good again.
    writeFileSync(inventoryFile, stringify(INVENTORY));
    await expect.poll(() => s.events('inventory_reloaded').length, { timeout: 10_000 }).toBe(1);
    expect(s.logged.filter((l) => l.event === 'inventory_reloaded')).toEqual([
      expect.objectContaining({ file: inventoryFile, unchanged: true }),
    ]);
    expect(inventoryChanges).toBe(0);
    expect(await registry.metrics()).toContain('meshauth_file_reload_failing{file="inventory"} 0');
  });

  it('reports a policy taken but not acted on (a listener threw) as failed until a resync succeeds', async () => {
    const inventoryFile = join(dir, 'inventory.yaml');
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(inventoryFile, stringify(INVENTORY));
    writeFileSync(policyFile, ONE_RULE);
    const s = await open(inventoryFile, policyFile);
    const registry = new Registry();
    s.sources.registerMetrics(registry, () => 0);
    // The daemon's resync: throws when the maps cannot be brought in line.
    s.sources.onPolicyChange(() => {
      throw new Error('policy map full');
    });
    writeFileSync(policyFile, TWO_RULES);
    await expect.poll(() => s.events('policy_reload_failed').length, { timeout: 10_000 }).toBe(1);
    expect(s.logged.find((l) => l.event === 'policy_reload_failed')).toMatchObject({
      file: policyFile,
      applied: true,
      reason: 'policy map full',
    });
    expect(s.events('policy_reloaded')).toEqual([]);
    expect(s.sources.policy.current.rules).toHaveLength(2);
    // The other listener still ran.
    expect(s.policyChanges()).toBe(1);
    let metrics = await registry.metrics();
    expect(metrics).toContain('meshauth_file_reload_total{file="policy",outcome="failed"} 1');
    expect(metrics).toContain('meshauth_file_reload_total{file="policy",outcome="applied"} 0');
    expect(metrics).toContain('meshauth_file_reload_failing{file="policy"} 1');

    // A later successful resync (for any reason) clears it without counting a reload.
    s.sources.acted();
    metrics = await registry.metrics();
    expect(metrics).toContain('meshauth_file_reload_failing{file="policy"} 0');
    expect(metrics).toContain('meshauth_file_reload_total{file="policy",outcome="failed"} 1');
  });

  it('stops reloading on close()', async () => {
    const inventoryFile = join(dir, 'inventory.yaml');
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(inventoryFile, stringify(INVENTORY));
    writeFileSync(policyFile, ONE_RULE);
    const s = await open(inventoryFile, policyFile);
    const first = s.sources.policy.current;
    await s.sources.close();
    await s.sources.close();
    sources = undefined;

    // Settle point: a probe watch on the same file with a longer quiet time than the sources'
    // (200 ms) ran, so an open policy watch would have reloaded by then.
    let probed = false;
    const probe = watchFile(policyFile, () => (probed = true), { debounceMs: 600 });
    try {
      writeFileSync(policyFile, TWO_RULES);
      await expect.poll(() => probed, { timeout: 10_000 }).toBe(true);
    } finally {
      probe.close();
    }
    expect(s.sources.policy.current).toBe(first);
    expect(s.policyChanges()).toBe(0);
    expect(s.events('policy_')).toEqual([]);
  });
});
