/**
 * Wall-clock steps under a running meshauthd. Only the daemons' wall clock moves, not the
 * machine's: each daemon runs with libfaketime (LD_PRELOAD) reading its offset from a file that the
 * test rewrites, with CLOCK_MONOTONIC and CLOCK_BOOTTIME left real (FAKETIME_DONT_FAKE_MONOTONIC).
 * Guarantees:
 * - kernel entries are in CLOCK_BOOTTIME: no step moves them, live pairs see no drop;
 * - a step back is not followed (src/time.ts WallClockGuard): an entry written afterwards expires
 *   no later than the certificates' real notAfter, and a certificate that really expired is
 *   refused although the stepped-back clock would call it valid;
 * - a step forward past notAfter expires the entries and fails new handshakes (fail closed), and
 *   the daemon keeps running; setting the clock right again is not followed until a restart;
 * - every step is logged (`wall_clock_step`) and audited (`clock-step`), and the audit chain,
 *   whose timestamps now go backwards, still verifies.
 */
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import { TRUST_DOMAIN } from '../../demo/topology.js';
import { bootNowNs } from '../../src/datapath/clock.js';
import { DevCa } from '../../src/identity/dev-ca.js';
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

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
/** The SVIDs' lifetime: shorter than the steps, so that a step crosses a notAfter. */
const SVID_TTL_MS = 10 * 60_000;
const BACK_S = 30 * 60;
const FORWARD_S = 60 * 60;

describe.skipIf(!existsSync(LIBFAKETIME))('wall-clock steps under a running meshauthd', () => {
  let env: FaultCluster | undefined;
  let dir: string;
  const offsetFile = (node: string): string => join(dir, `${node}.faketime`);
  /**
   * Sets a daemon's wall-clock offset from the real time (libfaketime re-reads the file within a
   * second); written aside and renamed, so that no read sees a half-written file.
   */
  const step = (node: string, seconds: number): void => {
    writeFileSync(`${offsetFile(node)}.tmp`, `${seconds >= 0 ? '+' : ''}${seconds}\n`);
    renameSync(`${offsetFile(node)}.tmp`, offsetFile(node));
  };
  const stepLogs = (node: string) => env!.cluster.logs(node, 'wall_clock_step');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-faketime-'));
    for (const node of ['node-a', 'node-b']) step(node, 0);
    env = await startFaultCluster('fclk', {
      clients: 4,
      svidTtl: '10m',
      rules: [
        { name: 'web-to-db', from: idOf('web'), to: idOf('db') },
        { name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') },
      ],
      extraConfig: (node) => ({
        handshake: {
          listen: node === 'node-a' ? '192.168.90.1' : '192.168.90.2',
          port: 4250,
          timeout: '2s',
        },
        auth: { retryBase: '500ms', retryMax: '1s', gcInterval: '1s', reauthAt: 0 },
      }),
      daemonEnv: (node) => ({
        LD_PRELOAD: LIBFAKETIME,
        FAKETIME_TIMESTAMP_FILE: offsetFile(node),
        FAKETIME_CACHE_DURATION: '1',
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
      }),
    });
    // A development CA valid since two hours ago (its certificate is back-dated only 30 s when made
    // now), so that a daemon whose clock is 30 minutes back still sees a valid CA.
    const { cluster } = env;
    for (const node of ['node-a', 'node-b']) await cluster.stop(node);
    const realNow = Date.now;
    Date.now = () => realNow() - 2 * 3_600_000;
    let ca: DevCa;
    try {
      ca = await DevCa.create(TRUST_DOMAIN);
    } finally {
      Date.now = realNow;
    }
    rmSync(cluster.caDir, { recursive: true, force: true });
    await ca.save({ caCert: join(cluster.caDir, 'ca.crt'), caKey: join(cluster.caDir, 'ca.key') });
    for (const node of ['node-a', 'node-b']) await cluster.start(node);
  });

  afterAll(async () => {
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const connect = async (i: number, timeoutMs: number): Promise<Record<string, unknown>> => {
    const t = env!.traffic('web', [
      'pairs',
      ...['--host', env!.cluster.topo.pod('db').ip, '--port', '8080'],
      ...fromClients(i),
      ...['--count', '1', '--timeout', String(timeoutMs)],
    ]);
    await t.exited;
    return t.lines[0] ?? {};
  };
  const entriesOf = (node: string, id: string) =>
    namedAuthEntries(env!.cluster, node).filter((e) => e.localId === id || e.remoteId === id);

  it('keeps kernel entries through a step back, and bounds new entries by the real notAfter', async () => {
    const { cluster } = env!;
    const first = await cluster.connect('web', 'db', 8080, 8000);
    expect(first, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });
    const before = entriesOf('node-a', idOf('web'));
    expect(before).toHaveLength(1);
    const drops = cluster.counters('node-a')['drop_auth_missing'];

    step('node-a', -BACK_S);
    await waitFor(() => stepLogs('node-a').length > 0, 10_000, 'the step back detected');
    expect(stepLogs('node-a')[0]).toMatchObject({ direction: 'backward' });
    expect(Number(stepLogs('node-a')[0]!['behind_ms'])).toBeGreaterThan((BACK_S - 5) * 1000);

    // The kernel's expiry did not move, and the live pair still passes without a new signal.
    expect(entriesOf('node-a', idOf('web'))).toEqual(before);
    expect((await cluster.connect('web', 'db', 8080, 3000)).ok).toBe(true);
    expect(cluster.counters('node-a')['drop_auth_missing']).toBe(drops);

    // A new pair after the step: its entry must not outlive the certificates' real notAfter
    // (the stepped-back clock would put notAfter 30 minutes further away).
    expect(await connect(0, 8000), summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });
    const [entry] = entriesOf('node-a', clientId(0));
    expect(entry).toBeDefined();
    const expiresRealMs = Date.now() + Number(entry!.expiryBootNs - bootNowNs()) / 1e6;
    // The entry is written before its audit records are committed (the writer batches): wait.
    const succeeded = () =>
      readAudit(cluster, 'node-a').events.find(
        (e) => e.type === 'handshake-succeeded' && e.localId === clientId(0),
      );
    await waitFor(() => succeeded() !== undefined, 5_000, 'the handshake committed to the audit trail');
    const ok = succeeded();
    const peerNotAfterMs = Number(ok?.details?.['peerNotAfterMs']);
    expect(peerNotAfterMs).toBeGreaterThan(Date.now());
    expect(expiresRealMs).toBeLessThanOrEqual(peerNotAfterMs + 1000);
    expect(expiresRealMs).toBeLessThanOrEqual(Date.now() + SVID_TTL_MS + 1000);
    await expect.poll(() => unearnedEntries(cluster, 'node-a'), { timeout: 5_000 }).toEqual([]);
  }, 60_000);

  it('refuses a certificate that really expired although the stepped-back clock calls it valid', async () => {
    const { cluster } = env!;
    // node-b starts on a clock 30 minutes back: its development CA issues SVIDs whose notAfter
    // (20 minutes ago, really) the stepped-back node-a would still take for the future.
    step('node-b', -BACK_S);
    await cluster.stop('node-b');
    await cluster.start('node-b');
    const r = await connect(1, 4000);
    expect(r.ok).toBe(false);
    expect(entriesOf('node-a', clientId(1))).toEqual([]);
    expect(entriesOf('node-b', clientId(1))).toEqual([]);
    // The refusal's log line can still be in the pipe when the connection attempt ends.
    const reasons = () =>
      cluster
        .logs('node-a', 'auth_failed')
        .filter((l) => l['local_id'] === clientId(1))
        .map((l) => l['reason']);
    await expect
      .poll(reasons, { message: summarize(cluster.logs('node-a')), timeout: 10_000 })
      .toContain('svid-expired');
    // node-b back on the real clock, started again so that its SVIDs are issued on it.
    step('node-b', 0);
    await cluster.stop('node-b');
    await cluster.start('node-b');
    for (const node of ['node-a', 'node-b'])
      await expect.poll(() => unearnedEntries(cluster, node), { message: node, timeout: 5_000 }).toEqual([]);
  }, 60_000);

  it('fails closed on a step forward past notAfter and stays up; a restart takes the right clock again', async () => {
    const { cluster } = env!;
    expect(entriesOf('node-a', clientId(0))).toHaveLength(1);
    const seen = stepLogs('node-a').length;
    step('node-a', FORWARD_S);
    await waitFor(
      () =>
        stepLogs('node-a').some((l, i) => i >= seen && l['direction'] === 'forward' && l['behind_ms'] === 0),
      10_000,
      'the step forward detected',
    );
    // Every entry of node-a is past its notAfter on the new clock: removed (gc-expired).
    await waitFor(() => namedAuthEntries(cluster, 'node-a').length === 0, 10_000, 'entries expired');
    // Their records follow the map deletes through the audit writer's batch: wait for them.
    const expired = () =>
      readAudit(cluster, 'node-a').events.filter(
        (e) => e.type === 'entry-expired' && e.reason === 'gc-expired',
      ).length;
    await waitFor(() => expired() >= 2, 5_000, 'the expiries committed to the audit trail');
    // New handshakes fail (node-a's SVIDs now start in node-b's future), nothing is written.
    expect((await connect(2, 4000)).ok).toBe(false);
    expect(entriesOf('node-a', clientId(2))).toEqual([]);
    expect(entriesOf('node-b', clientId(2))).toEqual([]);

    // The clock set right again is not followed: still ahead, still failing closed.
    const seen2 = stepLogs('node-a').length;
    step('node-a', 0);
    await waitFor(
      () => stepLogs('node-a').some((l, i) => i >= seen2 && l['direction'] === 'backward'),
      10_000,
      'the step back detected',
    );
    expect(Number(stepLogs('node-a').at(-1)!['behind_ms'])).toBeGreaterThan((FORWARD_S - 5) * 1000);
    expect((await connect(2, 4000)).ok).toBe(false);
    expect(cluster.daemons.get('node-a')!.child.exitCode).toBeNull();

    await cluster.stop('node-a');
    await cluster.start('node-a');
    expect(await connect(3, 8000), summarize(cluster.logs('node-a'))).toMatchObject({ ok: true });
    expect(entriesOf('node-a', clientId(3))).toHaveLength(1);

    // Audited: every step, in a chain whose timestamps went back and forth, and which verifies.
    const { events, verified } = readAudit(cluster, 'node-a');
    expect(verified).toBe(true);
    const steps = events.filter((e) => e.type === 'clock-step').map((e) => e.reason);
    expect(steps).toEqual(['wall-clock-backward', 'wall-clock-forward', 'wall-clock-backward']);
    expect(events.some((e, i) => i > 0 && e.atMs < events[i - 1]!.atMs)).toBe(true);
    for (const node of ['node-a', 'node-b']) await expectEarnedAndVerified(cluster, node);
  }, 90_000);
});
