/**
 * Guarantee: meshauthd killed with SIGKILL, on either node, while new pairs keep arriving and a
 * live pair keeps sending, (1) costs the live pair no packet (its entries are pinned in bpffs and
 * the programs stay attached), (2) keeps enforcing while it is away (new pairs are dropped, not
 * passed), (3) leaves no kernel entry that an `entry-written` audit event does not account for,
 * (4) leaves an audit chain that verifies, and (5) catches up after the restart: every pair that
 * was pending gets authenticated and connects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import {
  CLIENTS_PATTERN,
  fromClients,
  idOf,
  namedAuthEntries,
  startFaultCluster,
  unearnedEntries,
  waitFor,
  type FaultCluster,
} from './harness.js';
import { expectEarnedAndVerified } from './checks.js';

const PAIRS = 60;

describe('meshauthd under SIGKILL with new pairs and live traffic', () => {
  let env: FaultCluster | undefined;

  beforeAll(async () => {
    env = await startFaultCluster('fk9', {
      clients: PAIRS,
      rules: [
        { name: 'web-to-db', from: idOf('web'), to: idOf('db') },
        { name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') },
      ],
    });
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('drops nothing of a live pair, enforces while away, writes no unearned entry and catches up', async () => {
    const { cluster, traffic } = env!;
    const db = cluster.topo.pod('db').ip;
    // The live pair: authenticated before any fault.
    const first = await cluster.connect('web', 'db', 8080, 8000);
    expect(first, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });

    const sink = traffic('db', ['udp-sink', '--port', '9000']);
    await waitFor(() => sink.lines.length > 0, 5000, 'udp sink');
    const sender = traffic('web', ['udp-send', '--host', db, '--port', '9000', '--every', '5']);
    const pairs = traffic('web', [
      'pairs',
      ...['--host', db, '--port', '8080'],
      ...fromClients(),
      ...['--count', String(PAIRS), '--every', '100', '--timeout', '45000'],
    ]);

    // Kill the client side (node-a) once some new pairs are through, keep it away until the
    // datapath has dropped new pairs' packets on its own, then restart it.
    await waitFor(() => cluster.logs('node-a', 'auth_succeeded').length >= 10, 20_000, '10 pairs on node-a');
    await cluster.stop('node-a', 'SIGKILL');
    const pinnedAtKill = cluster.authEntries('node-a').length;
    const awayA = cluster.counters('node-a');
    await waitFor(
      () => cluster.counters('node-a')['drop_auth_missing']! >= awayA['drop_auth_missing']! + 3,
      10_000,
      'node-a datapath dropping new pairs while its daemon is away',
    );
    expect(cluster.counters('node-a')['pass_authenticated']!).toBeGreaterThan(awayA['pass_authenticated']!);
    await cluster.start('node-a');
    // Every pinned entry was taken back (then checked against the audit trail).
    expect(cluster.logs('node-a', 'entries_restored')[0]?.['count']).toBe(pinnedAtKill);

    // The same for the server side (node-b), killed while handshakes arrive.
    const servedB = cluster.logs('node-b', 'server_auth_succeeded').length;
    await waitFor(
      () => cluster.logs('node-b', 'server_auth_succeeded').length >= servedB + 5,
      20_000,
      '5 more pairs served by node-b',
    );
    await cluster.stop('node-b', 'SIGKILL');
    const awayB = cluster.counters('node-a');
    await waitFor(
      () => cluster.counters('node-a')['drop_auth_missing']! >= awayB['drop_auth_missing']! + 3,
      10_000,
      'new pairs dropped while node-b is away',
    );
    await cluster.start('node-b');

    // (5) Every pair, pending across either crash, connects in the end.
    await pairs.exited;
    const results = pairs.lines.filter((l) => 'i' in l);
    expect(results).toHaveLength(PAIRS);
    expect(
      results.filter((r) => r['ok'] !== true),
      summarize(cluster.logs('node-a'), 30),
    ).toEqual([]);

    // (1) The live pair lost nothing: every datagram sent arrived.
    const sent = Number((await sender.stop())['sent']);
    expect(sent).toBeGreaterThan(100);
    await expect
      .poll(
        async () => {
          sink.child.kill('SIGUSR1');
          await new Promise((r) => setTimeout(r, 50));
          return sink.lines[sink.lines.length - 1]?.['unique'];
        },
        { timeout: 5000 },
      )
      .toBe(sent);

    // (3) and (4), on both nodes.
    for (const node of ['node-a', 'node-b']) await expectEarnedAndVerified(cluster, node);
    // No more removals than the crash could have cost (the writer commits every 20 ms), and a
    // pair whose entry was removed for want of a record authenticates again, on the record.
    const removed = cluster.logs('node-a', 'entry_unaudited_removed').map((l) => String(l['local_id']));
    expect(removed.length).toBeLessThanOrEqual(2);
    for (const id of removed) {
      const i = Number(/c-(\d+)$/.exec(id)?.[1]);
      const again = traffic('web', [
        'pairs',
        ...['--host', db, '--port', '8080'],
        ...fromClients(i),
        ...['--count', '1', '--timeout', '15000'],
      ]);
      await again.exited;
      expect(again.lines[0]).toMatchObject({ ok: true });
    }
    expect(namedAuthEntries(cluster, 'node-a')).toHaveLength(PAIRS + 1);
    await expect.poll(() => unearnedEntries(cluster, 'node-a'), { timeout: 5_000 }).toEqual([]);
  }, 150_000);
});
