/**
 * meshauth-relay in a network namespace of its own, reaching two running meshauthd (each in its
 * node namespace) over veth links to their TCP APIs, as a relay Deployment reaches the nodes over
 * the cluster network. The operator CLI, run in the relay's namespace, gets one answer naming the
 * node of every event; with node-b's daemon stopped the answer still comes, flagged PARTIAL with
 * node-b named as missing.
 *
 * Two nodes over the default veth underlay, the relay on a link of its own to each; the three-node
 * cluster on a bridged underlay, with witnessed heads, is test/e2e/cluster-audit.test.ts.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT, type Cluster } from '../../demo/cluster.js';
import { NODES } from '../../demo/topology.js';
import { DevCa } from '../../src/identity/index.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

const ADMIN = 'spiffe://demo.local/ops/admin';
const RELAY = 'spiffe://demo.local/meshauth/relay';
const addrOf = (node: string) => `${NODES.find((n) => n.name === node)!.underlayIp}:4251`;
// the SPIFFE ID each node's API presents
const SELF: Record<string, string> = { 'node-a': id('api'), 'node-b': id('cache') };

describe('meshauth-relay in its own namespace', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;
  let dir: string;
  let relayNs: string;
  let relay: ChildProcess | undefined;
  let relayLog = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-relay-e2e-'));
    env = await startDemoCluster('rly', {
      rules: [{ name: 'web-to-db', from: id('web'), to: id('db') }],
      apiTcp: (node) => ({ listen: addrOf(node), allowedIds: [RELAY], identity: SELF[node]! }),
    });
    cluster = env.cluster;
    const lab = env.lab;
    // the relay's namespace: one veth link to each node (a /30 each), a host route to each node's
    // API address over its link; the nodes answer over the connected /30
    relayNs = lab.addNamespace('relay');
    NODES.forEach((n, i) => {
      const net = `192.168.${100 + i}`;
      lab.link(
        { ns: relayNs, ifname: `to-${n.name}`, addr: `${net}.2/30` },
        { ns: cluster.topo.nodeNs[n.name]!, ifname: 'to-relay', addr: `${net}.1/30` },
      );
      lab.exec(relayNs, 'ip', ['route', 'add', `${n.underlayIp}/32`, 'via', `${net}.1`]);
    });

    const ca = await DevCa.load({
      caCert: join(cluster.caDir, 'ca.crt'),
      caKey: join(cluster.caDir, 'ca.key'),
    });
    writeFileSync(join(dir, 'bundle.pem'), ca.caPem);
    for (const [name, spiffeId] of [
      ['admin', ADMIN],
      ['relay', RELAY],
    ] as const) {
      const svid = await ca.issue(spiffeId);
      writeFileSync(join(dir, `${name}.crt`), svid.chainPem);
      writeFileSync(join(dir, `${name}.key`), svid.keyPem, { mode: 0o600 });
    }
    relay = lab.spawn(relayNs, process.execPath, [
      join(PACKAGE_ROOT, 'bin/meshauth-relay.js'),
      '--listen',
      '127.0.0.1:4252',
      '--tls-cert',
      join(dir, 'relay.crt'),
      '--tls-key',
      join(dir, 'relay.key'),
      '--tls-bundle',
      join(dir, 'bundle.pem'),
      '--allow',
      ADMIN,
      '--audit-db',
      join(dir, 'relay-audit.db'),
      '--node-deadline',
      '2',
      ...NODES.flatMap((n) => ['--node', `${n.name}=${addrOf(n.name)}=${SELF[n.name]}`]),
    ]);
    relay.stdout!.on('data', (c: Buffer) => (relayLog += c.toString()));
    relay.stderr!.on('data', (c: Buffer) => (relayLog += c.toString()));
    const t0 = Date.now();
    while (!relayLog.includes('relay_started')) {
      if (relay.exitCode !== null || Date.now() - t0 > 20_000)
        throw new Error(`meshauth-relay did not start: ${relayLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 120_000);

  afterAll(async () => {
    relay?.kill('SIGTERM');
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** `meshauth --relay ... events -o json`, run in the relay's namespace. */
  const events = (): { status: number | null; origins: string[]; stderr: string } => {
    const [cmd, args] = env!.lab.argv(relayNs, process.execPath, [
      join(PACKAGE_ROOT, 'dist/src/cli/main.js'),
      '--relay',
      '127.0.0.1:4252',
      '--tls-cert',
      join(dir, 'admin.crt'),
      '--tls-key',
      join(dir, 'admin.key'),
      '--tls-bundle',
      join(dir, 'bundle.pem'),
      'events',
      '--limit',
      '0',
      '-o',
      'json',
    ]);
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
    const origins = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { origin?: string }).origin ?? '');
    return { status: r.status, origins, stderr: r.stderr };
  };

  it('answers for the whole cluster over the namespace network, then flags a stopped node', async () => {
    // web (node-a) -> db (node-b): both nodes record the mutual handshake in their trails
    const r = await cluster.connect('web', 'db', 8080, 8000);
    expect(r.ok).toBe(true);
    // The audit writers commit the handshake's records after the entries that let the connection
    // through: ask again until both trails answer with events.
    let all = events();
    await expect
      .poll(
        () => {
          all = events();
          return new Set(all.origins);
        },
        { timeout: 30_000 },
      )
      .toEqual(new Set(['node-a', 'node-b']));
    expect(all.status, all.stderr).toBe(0);
    expect(all.stderr).not.toMatch(/PARTIAL/);

    expect(await cluster.stop('node-b')).toBe(0);
    const partial = events();
    expect(partial.status, partial.stderr).toBe(0);
    expect(partial.stderr).toMatch(/PARTIAL: node node-b is missing from this answer \(unreachable/);
    expect(partial.stderr).not.toMatch(/node node-a/);
    expect(partial.origins.length).toBeGreaterThan(0);
    expect(new Set(partial.origins)).toEqual(new Set(['node-a']));
    // the relay's own log names the node it left out (written as the answer goes out)
    const failed = /"event":"relay_node_failed".*"node":"node-b"/;
    for (let i = 0; i < 100 && !failed.test(relayLog); i++) await new Promise((r) => setTimeout(r, 50));
    expect(relayLog).toMatch(failed);
  });
});
