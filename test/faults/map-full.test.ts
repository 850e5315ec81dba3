/**
 * Guarantee: a full auth map is a defined, fail-closed state. The handshake that cannot write its
 * entry fails with reason `auth-map-full` (audit handshake-failed, log auth_failed, metric
 * meshauth_handshakes_total{result="failure",reason="auth-map-full"}); nothing is written and the
 * pair's packets stay dropped. The write first puts GC pressure on the map (a GC pass removes
 * what expired); once slots are free the retried pair authenticates. Map sizes come from
 * datapath.maps.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import {
  CLIENTS_PATTERN,
  fromClients,
  idOf,
  namedAuthEntries,
  readAudit,
  startFaultCluster,
  waitFor,
  type FaultCluster,
} from './harness.js';
import { expectEarnedAndVerified } from './checks.js';

const SIZE = 16;
const TTL_MS = 8000;

describe('the auth map full', () => {
  let env: FaultCluster | undefined;

  beforeAll(async () => {
    env = await startFaultCluster('ffull', {
      clients: SIZE + 4,
      rules: [{ name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') }],
      // node-a's map holds SIZE entries; entries live TTL_MS and the periodic GC never runs in
      // this test, so only the pressure of a full map frees the expired ones.
      configPatch: (node) =>
        node === 'node-a'
          ? {
              datapath: { maps: { auth: SIZE } },
              handshake: { maxEntryTtl: `${TTL_MS}ms` },
              auth: { gcInterval: '1h', reauthAt: 0, retryBase: '500ms', retryMax: '1s' },
            }
          : { handshake: { maxEntryTtl: `${TTL_MS}ms` } },
    });
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('fails closed with auth-map-full, writes nothing unearned, and recovers through GC pressure', async () => {
    const { cluster, traffic } = env!;
    const db = cluster.topo.pod('db').ip;
    const maxEntries = Number(
      JSON.parse(
        cluster.topo.lab.exec(cluster.topo.nodeNs['node-a']!, 'bpftool', [
          '-j',
          'map',
          'show',
          'pinned',
          `${cluster.pinDir('node-a')}/ma_auth`,
        ]),
      ).max_entries,
    );
    expect(maxEntries).toBe(SIZE);
    const fill = traffic('web', [
      'pairs',
      ...['--host', db, '--port', '8080'],
      ...fromClients(),
      ...['--count', String(SIZE), '--every', '20', '--timeout', '5000'],
    ]);
    await fill.exited;
    expect(fill.lines.filter((l) => l['ok'] !== true)).toEqual([]);
    expect(namedAuthEntries(cluster, 'node-a')).toHaveLength(SIZE);

    // Four more pairs while every slot holds a live entry: refused, on the record, fail closed.
    const more = traffic('web', [
      'pairs',
      ...['--host', db, '--port', '8080'],
      ...fromClients(SIZE),
      ...['--count', '4', '--every', '20', '--timeout', '30000'],
    ]);
    await waitFor(
      () => new Set(cluster.logs('node-a', 'auth_failed').map((l) => l['local_id'])).size >= 4,
      15_000,
      'four refused pairs',
    );
    const refused = cluster.logs('node-a', 'auth_failed');
    expect(new Set(refused.map((l) => l['reason']))).toEqual(new Set(['auth-map-full']));
    await expect.poll(() => cluster.logs('node-a', 'auth_map_full').length).toBeGreaterThanOrEqual(4);
    expect(namedAuthEntries(cluster, 'node-a')).toHaveLength(SIZE);
    expect(more.lines).toEqual([]); // none connected meanwhile
    await expect
      .poll(
        () =>
          readAudit(cluster, 'node-a').events.filter(
            (e) => e.type === 'handshake-failed' && e.reason === 'auth-map-full',
          ).length,
      )
      .toBeGreaterThanOrEqual(4);

    // Once the first entries expire, the retried writes' GC pass frees their slots.
    await more.exited;
    expect(
      more.lines.filter((l) => l['ok'] !== true),
      summarize(cluster.logs('node-a'), 30),
    ).toEqual([]);
    // The last write's line (with what its GC pass freed) can still be in the pipe when its
    // connection is through.
    const freed = () => cluster.logs('node-a', 'auth_map_full').reduce((n, l) => n + Number(l['freed']), 0);
    await expect.poll(freed).toBeGreaterThanOrEqual(4);
    expect(namedAuthEntries(cluster, 'node-a').length).toBeLessThanOrEqual(SIZE);
    for (const node of ['node-a', 'node-b']) await expectEarnedAndVerified(cluster, node);
  }, 90_000);
});
