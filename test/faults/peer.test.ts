/**
 * Guarantees when the peer daemon misbehaves during a handshake:
 * - a peer that answers slower than handshake.timeout (its daemon stopped with SIGSTOP) fails the
 *   handshake cleanly with reason `timeout`, on the record, and writes no entry on either node;
 *   once it answers again, the retry authenticates the pair;
 * - a peer killed in the middle of a handshake (TCP connected, ClientHello sent, no answer) fails it
 *   at once with reason `peer-unreachable`, writes no entry, and the pair authenticates when the
 *   peer is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import {
  CLIENTS_PATTERN,
  fromClients,
  clientId,
  idOf,
  namedAuthEntries,
  readAudit,
  startFaultCluster,
  unearnedEntries,
  waitFor,
  type FaultCluster,
} from './harness.js';
import { expectEarnedAndVerified } from './checks.js';

describe('the peer daemon stopped or killed during handshakes', () => {
  let env: FaultCluster | undefined;

  beforeAll(async () => {
    env = await startFaultCluster('fpeer', {
      clients: 2,
      rules: [{ name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') }],
      extraConfig: (node) => ({
        handshake: {
          listen: node === 'node-a' ? '192.168.90.1' : '192.168.90.2',
          port: 4250,
          timeout: '2s',
        },
        auth: { retryBase: '500ms', retryMax: '2s', gcInterval: '1s', reauthAt: 0 },
      }),
    });
  });

  afterAll(async () => {
    await env?.teardown();
  });

  const connectFrom = (i: number) =>
    env!.traffic('web', [
      'pairs',
      ...['--host', env!.cluster.topo.pod('db').ip, '--port', '8080'],
      ...fromClients(i),
      ...['--count', '1', '--timeout', '40000'],
    ]);
  const failuresOf = (i: number) =>
    env!.cluster.logs('node-a', 'auth_failed').filter((l) => l['local_id'] === clientId(i));
  const entriesOf = (node: string, i: number) =>
    namedAuthEntries(env!.cluster, node).filter(
      (e) => e.localId === clientId(i) || e.remoteId === clientId(i),
    );
  const pidOf = (node: string): number => env!.cluster.daemons.get(node)!.child.pid!;

  it('fails a handshake with a stopped peer with reason timeout, writes nothing, and authenticates once it answers', async () => {
    const { cluster } = env!;
    process.kill(pidOf('node-b'), 'SIGSTOP');
    let resumed = false;
    try {
      const conn = connectFrom(0);
      await waitFor(() => failuresOf(0).length >= 2, 20_000, 'two timed-out handshakes');
      expect(failuresOf(0).map((l) => l['reason'])).toEqual(['timeout', 'timeout']);
      expect(entriesOf('node-a', 0)).toEqual([]);
      expect(entriesOf('node-b', 0)).toEqual([]);
      process.kill(pidOf('node-b'), 'SIGCONT');
      resumed = true;
      await conn.exited;
      expect(conn.lines[0], summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });
    } finally {
      if (!resumed) process.kill(pidOf('node-b'), 'SIGCONT');
    }
    expect(entriesOf('node-a', 0)).toHaveLength(1);
    expect(entriesOf('node-b', 0)).toHaveLength(1);
    await expect
      .poll(() =>
        readAudit(cluster, 'node-a')
          .events.filter((e) => e.localId === clientId(0) && e.outcome === 'failure')
          .map((e) => [e.type, e.reason]),
      )
      .toContainEqual(['peer-unreachable', 'timeout']);
    for (const node of ['node-a', 'node-b'])
      await expect.poll(() => unearnedEntries(cluster, node), { message: node, timeout: 5_000 }).toEqual([]);
  }, 60_000);

  it('fails a handshake whose peer is killed mid-way with reason peer-unreachable, and authenticates after the restart', async () => {
    const { cluster, lab } = env!;
    process.kill(pidOf('node-b'), 'SIGSTOP');
    const conn = connectFrom(1);
    // Mid-handshake: the handshake connection is established (the kernel accepted it on the
    // stopped daemon's behalf) and the ClientHello is waiting for an answer.
    await waitFor(
      () =>
        lab
          .exec(cluster.topo.nodeNs['node-a']!, 'ss', ['-tnH', 'state', 'established', 'dport = :4250'])
          .trim().length > 0,
      10_000,
      'handshake connection established',
    );
    const before = failuresOf(1).length;
    await cluster.stop('node-b', 'SIGKILL');
    await waitFor(() => failuresOf(1).length > before, 5000, 'handshake failure after the kill');
    expect(failuresOf(1)[before]?.['reason']).toBe('peer-unreachable');
    expect(entriesOf('node-a', 1)).toEqual([]);
    await cluster.start('node-b');
    await conn.exited;
    expect(conn.lines[0], summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });
    expect(entriesOf('node-a', 1)).toHaveLength(1);
    for (const node of ['node-a', 'node-b']) await expectEarnedAndVerified(cluster, node);
  }, 60_000);
});
