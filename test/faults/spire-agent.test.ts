/**
 * The SPIRE agent killed (SIGKILL) during a rotation. Both daemons take their workloads' SVIDs
 * from a real SPIRE deployment (one spire-server, one spire-agent per node, Delegated Identity
 * API); SVIDs live 20 s and the agents rotate them at about half of that. node-b's agent is killed
 * right after it rotated an SVID, and stays away for longer than the SVIDs live. Guarantees:
 * - the daemons keep serving the entries they hold while the SVIDs behind them are valid;
 * - no entry outlives the certificates it was earned with: every kernel entry expires by the
 *   latest notAfter of the SVIDs held when the agent died, after which the pair is dropped and
 *   fails to re-authenticate with a reason (fail closed);
 * - when the agent is back the daemon reconnects by itself, picks up new SVIDs, and old and new
 *   pairs authenticate;
 * - nothing crashes, no unearned entry, both audit chains verify.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import { PODS } from '../../demo/topology.js';
import { bootNowNs } from '../../src/datapath/clock.js';
import { SpireLab, spireBinDir } from '../helpers/spire.js';
import {
  CLIENTS_PATTERN,
  fromClients,
  clientId,
  idOf,
  namedAuthEntries,
  startFaultCluster,
  waitFor,
  type FaultCluster,
} from './harness.js';
import { expectEarnedAndVerified } from './checks.js';

const bin = spireBinDir();
const MESHAUTHD = 'spiffe://demo.local/meshauthd';
const SVID_TTL_S = 20;

describe.skipIf(!bin)('the SPIRE agent killed during a rotation', () => {
  let spire: SpireLab | undefined;
  let env: FaultCluster | undefined;

  beforeAll(async () => {
    spire = await SpireLab.start(bin!, {
      trustDomain: 'demo.local',
      authorizedDelegates: [MESHAUTHD],
      nodes: ['node-a', 'node-b'],
    });
    const lab = spire;
    await lab.registerDelegate(MESHAUTHD, ['node-a', 'node-b']);
    const workloads = [
      ...PODS.map((p) => ({ id: p.spiffeId, name: p.name, node: p.node })),
      ...[0, 1].map((i) => ({ id: clientId(i), name: `c-${i}`, node: 'node-a' })),
    ];
    for (const w of workloads) {
      await lab.createEntry({
        spiffeId: w.id,
        selectors: ['k8s:ns:demo', `k8s:sa:${w.name}`],
        parentId: lab.agent(w.node).nodeId,
        x509SvidTtlS: SVID_TTL_S,
      });
    }
    env = await startFaultCluster('fspire', {
      clients: 2,
      rules: [
        { name: 'web-to-db', from: idOf('web'), to: idOf('db') },
        { name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') },
      ],
      extraConfig: (node) => ({
        identity: lab.delegatedIdentityConfig(node),
        handshake: {
          listen: node === 'node-a' ? '192.168.90.1' : '192.168.90.2',
          port: 4250,
          timeout: '2s',
        },
        auth: { retryBase: '500ms', retryMax: '2s', gcInterval: '500ms', reauthAt: 0.8 },
      }),
    });
  }, 120_000);

  afterAll(async () => {
    await env?.teardown();
    await spire?.cleanup();
  });

  /** The latest notAfter of every SVID a node's daemon took (from its svid_updated log lines). */
  const latestNotAfterMs = (node: string): number =>
    Math.max(...env!.cluster.logs(node, 'svid_updated').map((l) => Date.parse(String(l['not_after']))));

  it('serves what it holds, lets nothing outlive its SVIDs, reconnects and authenticates again', async () => {
    const { cluster } = env!;
    expect(await cluster.connect('web', 'db', 8080, 8000), summarize(cluster.logs('node-a'))).toMatchObject({
      ok: true,
    });

    // Kill node-b's agent right after it rotated an SVID of its node.
    const rotations = (): number => cluster.logs('node-b', 'svid_updated').filter((l) => l['rotated']).length;
    const seen = rotations();
    await waitFor(() => rotations() > seen, SVID_TTL_S * 1000, 'a rotation on node-b');
    await spire!.killAgent('node-b');
    const killedAtMs = Date.now();
    const heldUntilMs = Math.max(latestNotAfterMs('node-a'), latestNotAfterMs('node-b'));

    // Every kernel entry expires by the latest notAfter of the SVIDs held (kernel clock, read here).
    for (const node of ['node-a', 'node-b']) {
      const boot = bootNowNs();
      for (const e of namedAuthEntries(cluster, node)) {
        const expiresMs = Date.now() + Number(e.expiryBootNs - boot) / 1e6;
        expect(expiresMs, `${node} ${e.localId} -> ${e.remoteId}`).toBeLessThanOrEqual(heldUntilMs + 1000);
      }
    }
    // Still served while the SVIDs are valid (the entry, or a re-authentication with held SVIDs).
    if (Date.now() < heldUntilMs - 5000) {
      expect((await cluster.connect('web', 'db', 8080, 3000)).ok).toBe(true);
    }
    // Once they expired: no entry left on either node, and the pair is refused (fail closed).
    await waitFor(
      () => namedAuthEntries(cluster, 'node-a').length + namedAuthEntries(cluster, 'node-b').length === 0,
      Math.max(0, heldUntilMs - Date.now()) + 5000,
      'every entry gone once the SVIDs expired',
    );
    expect(Date.now()).toBeLessThanOrEqual(heldUntilMs + 5000);
    expect((await cluster.connect('web', 'db', 8080, 3000)).ok).toBe(false);
    // The refusal's log line can still be in the pipe when the connection attempt ends.
    const failures = () =>
      cluster.logs('node-a', 'auth_failed').filter((l) => Date.parse(String(l['time'])) > killedAtMs);
    await expect
      .poll(() => failures().length, { message: summarize(cluster.logs('node-a')), timeout: 10_000 })
      .toBeGreaterThan(0);
    expect(failures().every((l) => typeof l['reason'] === 'string')).toBe(true);
    for (const node of ['node-a', 'node-b'])
      expect(cluster.daemons.get(node)!.child.exitCode, node).toBeNull();

    // The agent comes back: node-b reconnects on its own, takes fresh SVIDs, pairs authenticate.
    const updatesBefore = cluster.logs('node-b', 'svid_updated').length;
    await spire!.startAgent('node-b');
    // db's own SVID, the one the pair needs (the agent hands SVIDs back one workload at a time)
    await waitFor(
      () =>
        cluster
          .logs('node-b', 'svid_updated')
          .slice(updatesBefore)
          .some((l) => String(l['local_id']).endsWith('/sa/db')),
      60_000,
      "node-b took db's new SVID from the restarted agent",
    );
    expect(latestNotAfterMs('node-b')).toBeGreaterThan(Date.now());
    expect(await cluster.connect('web', 'db', 8080, 15_000), summarize(cluster.logs('node-a'))).toMatchObject(
      {
        ok: true,
      },
    );
    const pair = env!.traffic('web', [
      'pairs',
      ...['--host', cluster.topo.pod('db').ip, '--port', '8080'],
      ...fromClients(),
      ...['--count', '1', '--timeout', '15000'],
    ]);
    await pair.exited;
    expect(pair.lines[0], summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });

    for (const node of ['node-a', 'node-b']) {
      expect(cluster.daemons.get(node)!.child.exitCode, node).toBeNull();
      await expectEarnedAndVerified(cluster, node);
    }
  }, 150_000);
});
