/**
 * A CA rotation while handshakes run. node-a's workloads hold SVIDs of CA A1, node-b's of CA B;
 * entries live 3 s and are re-authenticated at half of that, so every pair is in a handshake every
 * 1.5 s and handshakes are always in flight. The rotation: A2 is added to both nodes' bundles, half
 * of the client workloads get SVIDs of A2, then A1 is removed from both bundles while the other
 * half still hold A1 SVIDs. Guarantees:
 * - entries that relied on A1 are revoked at once (`bundle-revoked`) on both nodes, and pairs whose
 *   SVIDs chain to A1 fail from then on, each failure with its reason;
 * - no handshake verified under the old bundle writes an entry after the new bundle is applied:
 *   on each node, no `entry-written` event of an A1 pair follows the first revocation (the
 *   result of a handshake still in flight is refused at the write, `bundle-revoked`);
 * - pairs under A2 keep being authenticated, none of their entries is revoked;
 * - no unearned entry, both audit chains verify.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../demo/cluster.js';
import { PODS, TRUST_DOMAIN } from '../../demo/topology.js';
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

const CLIENTS = 16;
/** Clients c-0..c-7 move to A2; c-8..c-15 stay on A1 and lose their trust. */
const MOVED = 8;
const moved = (id: string): boolean => Array.from({ length: MOVED }, (_, i) => clientId(i)).includes(id);
const stayed = (id: string): boolean =>
  Array.from({ length: CLIENTS - MOVED }, (_, i) => clientId(MOVED + i)).includes(id);
const clientOf = (e: { localId?: string; remoteId?: string }): string | undefined =>
  [e.localId, e.remoteId].find((id) => id?.includes('/sa/c-'));

describe('a trust bundle changed while handshakes run', () => {
  let env: FaultCluster | undefined;
  let dir: string;
  let a1: DevCa;
  let a2: DevCa;
  let b: DevCa;
  const bundleFile = (node: string): string => join(dir, `${node}-bundle.pem`);
  const svidFiles = (id: string) => {
    const name = id.slice(id.lastIndexOf('/') + 1);
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  };
  /** Replaces a file the daemons watch in one step (written aside, renamed). */
  const put = (file: string, text: string, mode = 0o644): void => {
    writeFileSync(`${file}.tmp`, text, { mode });
    renameSync(`${file}.tmp`, file);
  };
  const issue = async (ca: DevCa, id: string): Promise<void> => {
    const svid = await ca.issue(id, { ttlMs: 3_600_000 });
    const f = svidFiles(id);
    put(f.key, svid.keyPem, 0o600);
    put(f.cert, svid.chainPem);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-rotation-'));
    [a1, a2, b] = await Promise.all([
      DevCa.create(TRUST_DOMAIN),
      DevCa.create(TRUST_DOMAIN),
      DevCa.create(TRUST_DOMAIN),
    ]);
    const ids: Record<string, string[]> = {
      'node-a': [
        ...PODS.filter((p) => p.node === 'node-a').map((p) => p.spiffeId),
        ...Array.from({ length: CLIENTS }, (_, i) => clientId(i)),
      ],
      'node-b': PODS.filter((p) => p.node === 'node-b').map((p) => p.spiffeId),
    };
    for (const [node, list] of Object.entries(ids))
      for (const id of list) await issue(node === 'node-a' ? a1 : b, id);
    for (const node of ['node-a', 'node-b']) put(bundleFile(node), a1.caPem + b.caPem);
    env = await startFaultCluster('fbnd', {
      clients: CLIENTS,
      rules: [{ name: 'clients-to-db', from: CLIENTS_PATTERN, to: idOf('db') }],
      maxEntryTtl: '3s',
      reauthAt: 0.5,
      extraConfig: (node) => ({
        identity: {
          source: 'files',
          files: {
            bundle: bundleFile(node),
            svids: ids[node]!.map((spiffeId) => ({ spiffeId, ...svidFiles(spiffeId) })),
          },
        },
        handshake: {
          listen: node === 'node-a' ? '192.168.90.1' : '192.168.90.2',
          port: 4250,
          timeout: '2s',
          maxEntryTtl: '3s',
        },
        auth: { retryBase: '300ms', retryMax: '1s', gcInterval: '500ms', reauthAt: 0.5 },
      }),
    });
  });

  afterAll(async () => {
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const clientEntries = (node: string) =>
    namedAuthEntries(env!.cluster, node).filter((e) => clientOf(e) !== undefined);
  const written = (node: string, afterSeq: number, pick: (id: string) => boolean) =>
    readAudit(env!.cluster, node).events.filter(
      (e) => e.seq > afterSeq && e.type === 'entry-written' && pick(clientOf(e) ?? ''),
    );
  const lastSeq = (node: string): number => readAudit(env!.cluster, node).events.at(-1)?.seq ?? 0;

  it('revokes what relied on the removed CA on both nodes, writes nothing under the old bundle, keeps the new CA pairs', async () => {
    const { cluster } = env!;
    const pairs = env!.traffic('web', [
      'pairs',
      ...['--host', cluster.topo.pod('db').ip, '--port', '8080'],
      ...fromClients(),
      ...['--count', String(CLIENTS), '--every', '20', '--timeout', '15000'],
    ]);
    await pairs.exited;
    expect(
      pairs.lines.filter((l) => l['ok'] === true),
      summarize(cluster.logs('node-a')),
    ).toHaveLength(CLIENTS);
    await waitFor(
      () => clientEntries('node-a').length === CLIENTS && clientEntries('node-b').length === CLIENTS,
      10_000,
      'every pair authenticated on both nodes',
    );
    // Re-authentication keeps every pair in handshakes (entries of 3 s, renewed at 1.5 s).
    const mark = { a: lastSeq('node-a'), b: lastSeq('node-b') };
    await waitFor(
      () => written('node-a', mark.a, () => true).length >= 2 * CLIENTS,
      15_000,
      'every pair re-authenticated twice',
    );

    // Rotation, first half: A2 is trusted too, and half of the clients get SVIDs of A2.
    const updates = (n: string): number => cluster.logs(n, 'bundles_updated').length;
    const before = { 'node-a': updates('node-a'), 'node-b': updates('node-b') };
    for (const node of ['node-a', 'node-b']) put(bundleFile(node), a1.caPem + a2.caPem + b.caPem);
    await waitFor(
      () => (['node-a', 'node-b'] as const).every((n) => updates(n) > before[n]),
      10_000,
      'A2 added on both nodes',
    );
    for (let i = 0; i < MOVED; i++) await issue(a2, clientId(i));
    // Every moved pair re-authenticated with its A2 SVID (audited rotation, then a new entry).
    const rotatedAt = lastSeq('node-b');
    await waitFor(
      () => new Set(written('node-b', rotatedAt, moved).map(clientOf)).size === MOVED,
      15_000,
      'moved pairs re-authenticated under A2',
    );
    await waitFor(
      () =>
        readAudit(cluster, 'node-a').events.filter((e) => e.type === 'svid-rotated' && moved(e.localId ?? ''))
          .length >= MOVED,
      10_000,
      'rotations of the moved clients',
    );
    const afterRotation = { a: lastSeq('node-a'), b: lastSeq('node-b') };
    await waitFor(
      () => new Set(written('node-b', afterRotation.b, moved).map(clientOf)).size === MOVED,
      15_000,
      'moved pairs re-authenticated again after their rotation',
    );

    // Second half, with handshakes of all 16 pairs in flight: A1 leaves both bundles.
    for (const node of ['node-a', 'node-b']) put(bundleFile(node), a2.caPem + b.caPem);
    const firstRevocation = (node: string): number | undefined =>
      readAudit(cluster, node).events.find((e) => e.type === 'entry-removed' && e.reason === 'bundle-revoked')
        ?.seq;
    await waitFor(
      () => firstRevocation('node-a') !== undefined && firstRevocation('node-b') !== undefined,
      10_000,
      'revocations on both nodes',
    );
    const applied = { 'node-a': firstRevocation('node-a')!, 'node-b': firstRevocation('node-b')! };
    // Settle point: the A1 pairs keep being asked for (re-authentication, retries) and fail.
    const failedSince = (node: string) =>
      readAudit(cluster, node).events.filter(
        (e) =>
          e.seq > applied[node as 'node-a' | 'node-b'] &&
          e.outcome === 'failure' &&
          stayed(clientOf(e) ?? ''),
      );
    await waitFor(
      () => new Set(failedSince('node-a').map(clientOf)).size === CLIENTS - MOVED,
      15_000,
      'every A1 pair failed after the change',
    );
    // The A2 pairs re-authenticate after the change (entries written later than the revocation).
    const laterSeq = lastSeq('node-b');
    await waitFor(
      () => new Set(written('node-b', laterSeq, moved).map(clientOf)).size === MOVED,
      15_000,
      'A2 pairs re-authenticated after the change',
    );

    for (const node of ['node-a', 'node-b'] as const) {
      const { events, verified } = readAudit(cluster, node);
      expect(verified, node).toBe(true);
      // Nothing relying on A1 was written once the new bundle applied.
      expect(
        events.filter(
          (e) => e.seq > applied[node] && e.type === 'entry-written' && stayed(clientOf(e) ?? ''),
        ),
        node,
      ).toEqual([]);
      // Every revocation is of an A1 pair; every A1 pair that held an entry was revoked.
      const revoked = events.filter((e) => e.type === 'entry-removed' && e.reason === 'bundle-revoked');
      expect(
        revoked.filter((e) => !stayed(clientOf(e) ?? '')),
        node,
      ).toEqual([]);
      // The kernel holds entries of A2 pairs only, one per pair.
      const left = clientEntries(node).map(clientOf);
      expect(
        left.filter((id) => stayed(id ?? '')),
        node,
      ).toEqual([]);
      expect(new Set(left).size, node).toBe(MOVED);
      await expect.poll(() => unearnedEntries(cluster, node), { message: node, timeout: 5_000 }).toEqual([]);
    }
    // Why the A1 pairs failed, as node-a recorded it: each with a stable reason.
    const reasons = new Set(failedSince('node-a').map((e) => e.reason));
    expect([...reasons].every((r) => typeof r === 'string' && r.length > 0)).toBe(true);
    expect(reasons.size).toBeGreaterThan(0);
    const counts = (['node-a', 'node-b'] as const).map((node) => {
      const events = readAudit(cluster, node).events;
      return {
        node,
        revoked: events.filter((e) => e.type === 'entry-removed' && e.reason === 'bundle-revoked').length,
        written: events.filter((e) => e.type === 'entry-written').length,
        refusedAtWrite: events.filter(
          (e) => e.outcome === 'failure' && e.reason === 'bundle-revoked' && e.type !== 'entry-removed',
        ).length,
        failureReasons: [
          ...new Set(events.filter((e) => e.outcome === 'failure').map((e) => `${e.type}/${e.reason}`)),
        ],
      };
    });
    process.stdout.write(`[fault] bundle change: ${JSON.stringify(counts)}\n`);
    expect(cluster.daemons.get('node-a')!.child.exitCode).toBeNull();
    expect(cluster.daemons.get('node-b')!.child.exitCode).toBeNull();
  }, 120_000);
});
