/**
 * meshauthd with policy.source file against the real datapath: a change of the policy file
 * reaches the kernel policy map (read with bpftool) through the same resync as a Kubernetes policy
 * change, and a bad file leaves the map as the last good policy made it. The audit trail (SQLite,
 * read through the daemon's gRPC API) holds one `policy-changed` record for the policy at start
 * and one per applied reload, none for the refused file. The daemon is the compiled one (dist/,
 * `npm run build`): its audit writer thread cannot load the TypeScript sources.
 */
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ApiClient, type EventMsg } from '../../../src/api/index.js';
import { AuditStore } from '../../../src/audit/index.js';
import { loadConfig } from '../../../src/config/index.js';
import type { Daemon } from '../../../src/daemon/daemon.js';
import { loadPolicyFile, policyDigest } from '../../../src/policy/index.js';
import { API, DaemonTestNode, WEB } from '../../helpers/daemon-node.js';
import { isPrivileged, run } from '../../helpers/netns.js';
import { freePort } from '../../helpers/ports.js';
import { until } from '../../helpers/until.js';
import { ROOT } from '../cli/build-dist.js';

const DAEMON_JS = join(ROOT, 'dist', 'src', 'daemon', 'daemon.js');

/** The compiled Daemon class (dist/), so that its audit writer thread runs as in production. */
async function compiledDaemon(): Promise<typeof Daemon> {
  if (!existsSync(DAEMON_JS)) throw new Error(`${DAEMON_JS} missing: run npm run build`);
  const mod = (await import(pathToFileURL(DAEMON_JS).href)) as typeof import('../../../src/daemon/daemon.js');
  return mod.Daemon;
}

let node: DaemonTestNode;
let daemon: Daemon | undefined;
let api: ApiClient | undefined;

beforeEach(() => {
  node = new DaemonTestNode({ prefix: 'meshauth-policy-reload-', labPrefix: 'pr' });
});

afterEach(async () => {
  api?.close();
  api = undefined;
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
    daemon = await (await compiledDaemon()).start(config, logger);
    const count = (event: string) => events.filter((e) => e.event === event).length;
    const client = new ApiClient({ socket: config.api.socket });
    api = client;
    let records: EventMsg[] = [];
    /** Polls the daemon's API until the trail holds `n` policy-changed records; returns their details. */
    const policyRecords = async (n: number): Promise<Array<Record<string, unknown>>> => {
      await until(
        `${n} policy-changed record(s)`,
        async () => {
          records = (await client.queryEvents({ filter: { types: ['policy-changed'] }, pageSize: 100 }))
            .events;
          return records.length >= n;
        },
        10_000,
        () => JSON.stringify(records),
      );
      expect(records).toHaveLength(n);
      for (const r of records) expect(r).toMatchObject({ type: 'policy-changed', outcome: 'info' });
      return records.map((r) => JSON.parse(r.detailsJson) as Record<string, unknown>);
    };
    const digestOfFile = () => policyDigest(loadPolicyFile(policyFile));
    const none = { count: 0, names: [] };
    const noModeChange = { count: 0, rules: [] };

    // The policy in force from the start is the first record.
    const required = digestOfFile();
    expect((await policyRecords(1))[0]).toEqual({
      source: 'file',
      file: policyFile,
      digest: required,
      rules: 1,
      modes: { required: 1, permissive: 0, disabled: 0 },
      added: { count: 1, names: ['web-api'] },
      removed: none,
      changed: none,
      modeChanged: noModeChange,
    });
    expect(records[0]!.reason).toBe('daemon-start');

    const enforced = policyModes();
    expect(enforced.length).toBeGreaterThan(0);
    expect(new Set(enforced)).toEqual(new Set([0]));

    // The rule switched to permissive, written atomically: the kernel entries follow.
    writeFileSync(`${policyFile}.tmp`, policyText('permissive'));
    renameSync(`${policyFile}.tmp`, policyFile);
    await expect.poll(() => new Set(policyModes()), { timeout: 10_000 }).toEqual(new Set([1]));
    expect(policyModes()).toHaveLength(enforced.length);
    expect(count('policy_reloaded')).toBe(1);
    const permissive = digestOfFile();
    expect(permissive).not.toBe(required);
    expect((await policyRecords(2))[1]).toEqual({
      source: 'file',
      file: policyFile,
      digest: permissive,
      previousDigest: required,
      rules: 1,
      modes: { required: 0, permissive: 1, disabled: 0 },
      added: none,
      removed: none,
      changed: { count: 1, names: ['web-api'] },
      modeChanged: { count: 1, rules: [{ name: 'web-api', from: 'required', to: 'permissive' }] },
    });
    expect(records[1]!.reason).toBe('file-reload');

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
    // The refused file left no record: the next one follows the permissive one directly.
    expect((await policyRecords(3))[2]).toEqual({
      source: 'file',
      file: policyFile,
      digest: digestOfFile(),
      previousDigest: permissive,
      rules: 0,
      modes: { required: 0, permissive: 0, disabled: 0 },
      added: none,
      removed: { count: 1, names: ['web-api'] },
      changed: none,
      modeChanged: noModeChange,
    });
    expect(records.map((r) => r.reason)).toEqual(['daemon-start', 'file-reload', 'file-reload']);

    // Written to the SQLite trail under the hash chain.
    await daemon.close();
    daemon = undefined;
    const store = AuditStore.open({ path: join(node.dir, 'state', 'audit.db'), readonly: true });
    try {
      expect(store.query({ types: ['policy-changed'], limit: 10 }).map((e) => e.hash)).toEqual(
        records.map((r) => r.hash),
      );
      // Nothing was lost on the way (a lost batch leaves a gap record).
      expect(store.query({ types: ['gap'], limit: 10 })).toEqual([]);
      expect(store.verifyChain().ok).toBe(true);
    } finally {
      store.close();
    }
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
    daemon = await (await compiledDaemon()).start(config, logger);
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

    // The trail: the policy taken is recorded before the maps are brought in line (the failure is
    // the log's and the metric's to report), then the fitting one.
    const client = new ApiClient({ socket: config.api.socket });
    api = client;
    let records: EventMsg[] = [];
    await until(
      '3 policy-changed records',
      async () => {
        records = (await client.queryEvents({ filter: { types: ['policy-changed'] }, pageSize: 100 })).events;
        return records.length >= 3;
      },
      10_000,
      () => JSON.stringify(records),
    );
    expect(
      records.map((r) => [r.reason, JSON.parse(r.detailsJson).added, JSON.parse(r.detailsJson).removed]),
    ).toEqual([
      ['daemon-start', { count: 1, names: ['web-api'] }, { count: 0, names: [] }],
      ['file-reload', { count: 1, names: ['all'] }, { count: 1, names: ['web-api'] }],
      ['file-reload', { count: 1, names: ['web-api'] }, { count: 1, names: ['all'] }],
    ]);
  });
});
