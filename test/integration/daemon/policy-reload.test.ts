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
});
