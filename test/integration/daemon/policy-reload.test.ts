/**
 * meshauthd with policy.source file against the real datapath: a change of the policy file
 * reaches the kernel policy map (read with bpftool) through the same resync as a Kubernetes policy
 * change, and a bad file leaves the map as the last good policy made it.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig } from '../../../src/config/index.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { API, DaemonTestNode, WEB } from '../../helpers/daemon-node.js';
import { isPrivileged, run } from '../../helpers/netns.js';
import { freePort } from '../../helpers/ports.js';

let node: DaemonTestNode;
let daemon: Daemon | undefined;

beforeEach(() => {
  node = new DaemonTestNode({ prefix: 'meshauth-policy-reload-', labPrefix: 'pr' });
});

afterEach(async () => {
  await daemon?.close();
  daemon = undefined;
  await node.cleanup();
});

/** Modes (0 enforce, 1 permissive) of the kernel policy entries, read with bpftool. */
function policyModes(): number[] {
  const rows = JSON.parse(
    run('bpftool', ['-j', 'map', 'dump', 'pinned', join(node.pinDir, 'ma_policy')]),
  ) as Array<{ formatted?: { value: { mode: number } } }>;
  return rows.map((r) => {
    if (!r.formatted) throw new Error('bpftool: map dump without BTF formatting');
    return r.formatted.value.mode;
  });
}

function policyText(mode: string): string {
  return stringify({ rules: [{ name: 'web-api', from: WEB, to: API, mode }] });
}

describe.skipIf(!isPrivileged())('meshauthd policy file reload', () => {
  it('brings the kernel policy map in line with a changed file and keeps it on a bad one', async () => {
    const identity = await node.devCaIdentity();
    node.writeInventory([API]);
    const policyFile = join(node.dir, 'policy.yaml');
    writeFileSync(policyFile, policyText('required'));
    const configFile = node.writeConfig(
      node.config(
        { handshakePort: await freePort() },
        {
          auth: { preauthenticate: false },
          identity,
          audit: { path: join(node.dir, 'state', 'audit.db') },
          metrics: { listen: '' },
        },
      ),
    );
    const config = loadConfig({ file: configFile, env: {} });
    const events: Array<{ event?: string; rules?: number; reason?: string }> = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void events.push(JSON.parse(l)) });
    daemon = await Daemon.start(config, logger);
    const count = (event: string) => events.filter((e) => e.event === event).length;

    const enforced = policyModes();
    expect(enforced.length).toBeGreaterThan(0);
    expect(new Set(enforced)).toEqual(new Set([0]));

    // The rule switched to permissive, written atomically: the kernel entries follow.
    writeFileSync(`${policyFile}.tmp`, policyText('permissive'));
    renameSync(`${policyFile}.tmp`, policyFile);
    await expect.poll(() => new Set(policyModes()), { timeout: 10_000 }).toEqual(new Set([1]));
    expect(policyModes()).toHaveLength(enforced.length);
    expect(count('policy_reloaded')).toBe(1);

    // A bad file: the failure is logged (settle point) and the map is what the last good policy made.
    writeFileSync(policyFile, policyText('sometimes'));
    await expect.poll(() => count('policy_reload_failed'), { timeout: 10_000 }).toBeGreaterThan(0);
    expect(events.find((e) => e.event === 'policy_reload_failed')?.reason).toMatch(
      new RegExp(`^policy ${policyFile}: rules\\[0\\]\\.mode: `),
    );
    expect(policyModes()).toEqual(enforced.map(() => 1));

    // Every rule removed (a valid file): the entries go.
    writeFileSync(policyFile, stringify({ rules: [] }));
    await expect.poll(() => policyModes(), { timeout: 10_000 }).toEqual([]);
    expect(count('policy_reloaded')).toBe(2);
    expect(count('state_resync_failed')).toBe(0);
  });

  it('reports a policy the full kernel map cannot hold as taken but failed, and recovers on a fitting one', async () => {
    const identity = await node.devCaIdentity();
    const ids = (sa: string) => [0, 1, 2, 3, 4].map((i) => `spiffe://demo.local/ns/demo/sa/${sa}-${i}`);
    writeFileSync(
      join(node.dir, 'inventory.yaml'),
      stringify({
        nodes: [
          { name: 'node-a', address: '127.0.0.1', podCIDRs: ['10.10.1.0/24'] },
          { name: 'node-b', address: '127.0.0.2', podCIDRs: ['10.10.2.0/24'] },
        ],
        workloads: [
          ...ids('web').map((spiffeId, i) => ({ spiffeId, node: 'node-a', ips: [`10.10.1.${10 + i}`] })),
          ...ids('api').map((spiffeId, i) => ({ spiffeId, node: 'node-b', ips: [`10.10.2.${10 + i}`] })),
        ],
      }),
    );
    const one = (mode: string) =>
      stringify({ rules: [{ name: 'web-api', from: ids('web')[0], to: ids('api')[0], mode }] });
    // 5 local x 10 identities: far more entries than a 16-entry policy map holds.
    const all = stringify({
      rules: [{ name: 'all', from: 'spiffe://demo.local/ns/demo/*', to: 'spiffe://demo.local/ns/demo/*' }],
    });
    const policyFile = join(node.dir, 'policy.yaml');
    writeFileSync(policyFile, one('required'));
    const base = node.config({ handshakePort: await freePort() });
    const configFile = node.writeConfig({
      ...base,
      datapath: { ...(base['datapath'] as Record<string, unknown>), maps: { policy: 16 } },
      auth: { preauthenticate: false },
      identity,
      audit: { path: join(node.dir, 'state', 'audit.db') },
      metrics: { listen: '' },
    });
    const config = loadConfig({ file: configFile, env: {} });
    const events: Array<{ event?: string; applied?: boolean; reason?: string; code?: string }> = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void events.push(JSON.parse(l)) });
    daemon = await Daemon.start(config, logger);
    const count = (event: string) => events.filter((e) => e.event === event).length;
    const enforced = policyModes();
    expect(enforced.length).toBeGreaterThan(0);
    expect(enforced.length).toBeLessThanOrEqual(16);

    // A valid file the map cannot hold: taken, but acting on it failed, and the log says so.
    writeFileSync(policyFile, all);
    await expect.poll(() => count('policy_reload_failed'), { timeout: 10_000 }).toBe(1);
    const failed = events.find((e) => e.event === 'policy_reload_failed');
    // the kernel's answer to a write into a full hash map, as the reason and its stable code
    expect(failed).toMatchObject({
      applied: true,
      reason: 'update ma_policy: E2BIG',
      code: 'MESHAUTH_ERR_DATAPATH',
    });
    expect(count('state_resync_failed')).toBe(1);
    expect(count('policy_reloaded')).toBe(0);

    // A policy that fits: the maps are reconciled to it and the reload is reported as done.
    writeFileSync(policyFile, one('permissive'));
    await expect.poll(() => count('policy_reloaded'), { timeout: 10_000 }).toBe(1);
    expect(new Set(policyModes())).toEqual(new Set([1]));
    expect(policyModes()).toHaveLength(enforced.length);
    expect(count('state_resync_failed')).toBe(1);
  });
});
