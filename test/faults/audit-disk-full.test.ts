/**
 * Guarantee: the audit disk filling up does not stop enforcement (new pairs still authenticate
 * and connect) and loses no event: what was committed stays as it was, and what is recorded while
 * the disk is full is kept in memory (up to the writer's queue bound) and written once space
 * returns, so every kernel entry still has its entry-written event; only events beyond the queue
 * bound would be lost, and those are counted in one `gap` event. node-a's audit database lives on
 * a 4 MiB tmpfs mounted for the test and filled up with a filler file.
 */
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import { run } from '../helpers/netns.js';
import {
  CLIENTS_PATTERN,
  clientId,
  fromClients,
  idOf,
  readAudit,
  startFaultCluster,
  unearnedEntries,
  waitFor,
  type FaultCluster,
} from './harness.js';

describe('the audit disk full', () => {
  let env: FaultCluster | undefined;
  let fs: string;

  beforeAll(async () => {
    fs = mkdtempSync(join(tmpdir(), 'meshauth-auditfs-'));
    run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', fs]);
    env = await startFaultCluster('fdisk', {
      clients: 10,
      rules: [{ name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') }],
      configPatch: (node) => (node === 'node-a' ? { audit: { path: join(fs, 'audit.db') } } : {}),
    });
  });

  afterAll(async () => {
    await env?.teardown();
    try {
      run('umount', ['-l', fs]);
    } catch {
      /* not mounted */
    }
    rmSync(fs, { recursive: true, force: true });
  });

  const connect = (i: number, count: number) =>
    env!.traffic('web', [
      'pairs',
      ...['--host', env!.cluster.topo.pod('db').ip, '--port', '8080'],
      ...fromClients(i),
      ...['--count', String(count), '--timeout', '15000'],
    ]);

  it('keeps enforcing and loses no event: what waited is written once space returns', async () => {
    const { cluster } = env!;
    const first = connect(0, 2);
    await first.exited;
    expect(first.lines.filter((l) => l['ok'] !== true)).toEqual([]);
    await waitFor(
      () => readAudit(cluster, 'node-a').events.filter((e) => e.type === 'entry-written').length >= 2,
      5000,
      'the first entries on the record',
    );
    const committed = readAudit(cluster, 'node-a').events;

    // Fill the filesystem to the last block.
    const filler = join(fs, 'filler');
    try {
      run('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k']);
    } catch {
      /* ENOSPC: full, as intended */
    }
    const during = connect(2, 4);
    await during.exited;
    expect(
      during.lines.filter((l) => l['ok'] !== true),
      summarize(cluster.logs('node-a')),
    ).toEqual([]);
    await waitFor(
      () => cluster.logs('node-a', 'audit_write_failed').length > 0,
      5000,
      'an audit write failing',
    );
    // Logged once per outage, not once per retry.
    expect(cluster.logs('node-a', 'audit_write_failed')).toHaveLength(1);

    // Space returns: the next events are written, preceded by one gap event.
    unlinkSync(filler);
    const after = connect(6, 2);
    await after.exited;
    expect(after.lines.filter((l) => l['ok'] !== true)).toEqual([]);
    // Settle point: the records of both pairs connected after space returned (c-6 and c-7, not only
    // the last one: the writer commits in batches after the entries that let them through). What
    // waited during the outage was queued before them, so any of it missing below is lost.
    const writtenIds = () =>
      new Set(
        readAudit(cluster, 'node-a')
          .events.filter((e) => e.type === 'entry-written')
          .map((e) => e.localId),
      );
    await waitFor(
      () => {
        const ids = writtenIds();
        return ids.has(clientId(6)) && ids.has(clientId(7));
      },
      10_000,
      'events written after space returned',
    );
    const { events, verified } = readAudit(cluster, 'node-a');
    expect(verified).toBe(true);
    // Nothing committed before the disk filled is lost or changed.
    expect(events.slice(0, committed.length)).toEqual(committed);
    // Nothing was lost: no gap, and the pairs authenticated while the disk was full are on record.
    expect(events.filter((e) => e.type === 'gap')).toEqual([]);
    const written = new Set(events.filter((e) => e.type === 'entry-written').map((e) => e.localId));
    for (let i = 0; i < 8; i++)
      expect(written.has(`spiffe://demo.local/ns/demo/sa/c-${i}`), `c-${i}`).toBe(true);
    // The recovery's log line can still be in the pipe when its records are committed.
    await expect.poll(() => cluster.logs('node-a', 'audit_write_recovered').length).toBe(1);
    // Still one failure line for the one outage, now that the outage is over.
    expect(cluster.logs('node-a', 'audit_write_failed')).toHaveLength(1);
    for (const node of ['node-a', 'node-b'])
      await expect.poll(() => unearnedEntries(cluster, node), { message: node, timeout: 5_000 }).toEqual([]);
  }, 90_000);
});
