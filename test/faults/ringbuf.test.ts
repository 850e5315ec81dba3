/**
 * Guarantee: a signal storm that overruns the signal ring buffer loses signals only in a counted
 * way (kernel counter signal_ringbuf_full) and never loses a pair for good: the datapath keeps
 * dropping the pair's packets and signalling again after each throttle window, so once the storm
 * ends every pair is authenticated. The ring is made small (datapath.maps.signalRingBytes: 4096,
 * 128 signals) and the daemon is stopped (SIGSTOP) during the storm, so that it cannot keep up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import {
  CLIENTS_PATTERN,
  fromClients,
  idOf,
  namedAuthEntries,
  startFaultCluster,
  type FaultCluster,
} from './harness.js';
import { expectEarnedAndVerified } from './checks.js';

const PAIRS = 60;

describe('the signal ring buffer overrun by a storm', () => {
  let env: FaultCluster | undefined;

  beforeAll(async () => {
    env = await startFaultCluster('fring', {
      clients: PAIRS,
      rules: [{ name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') }],
      signalThrottle: '20ms',
      configPatch: (node) => (node === 'node-a' ? { datapath: { maps: { signalRingBytes: 4096 } } } : {}),
    });
  });

  afterAll(async () => {
    await env?.teardown();
  });

  it('counts the lost signals and authenticates every pair once the storm ends', async () => {
    const { cluster, traffic } = env!;
    const db = cluster.topo.pod('db').ip;
    const before = cluster.counters('node-a');
    const pid = cluster.daemons.get('node-a')!.child.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      const storm = traffic('web', [
        'storm',
        ...['--host', db, '--port', '9'],
        ...fromClients(),
        ...['--count', String(PAIRS), '--ms', '1500'],
      ]);
      await storm.exited;
      expect(Number(storm.lines[0]?.['sent'])).toBeGreaterThan(PAIRS * 100);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const during = cluster.counters('node-a');
    const lost = during['signal_ringbuf_full']! - before['signal_ringbuf_full']!;
    const sent = during['signal_sent']! - before['signal_sent']!;
    // The ring holds 128 signals; the rest of the storm's signals were counted as lost, not passed.
    expect(sent).toBeLessThanOrEqual(128);
    expect(lost).toBeGreaterThan(PAIRS);
    expect(during['pass_authenticated']).toBe(before['pass_authenticated']);

    // After the storm: every pair connects (authenticated from the ring's backlog or re-signalled).
    const pairs = traffic('web', [
      'pairs',
      ...['--host', db, '--port', '8080'],
      ...fromClients(),
      ...['--count', String(PAIRS), '--every', '0', '--timeout', '30000'],
    ]);
    await pairs.exited;
    expect(
      pairs.lines.filter((l) => l['ok'] !== true),
      summarize(cluster.logs('node-a'), 30),
    ).toEqual([]);
    expect(namedAuthEntries(cluster, 'node-a')).toHaveLength(PAIRS);
    for (const node of ['node-a', 'node-b']) await expectEarnedAndVerified(cluster, node);
  }, 90_000);
});
