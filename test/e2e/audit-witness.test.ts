/**
 * Witnessed audit heads between two running meshauthd in their own network namespaces: each node
 * signs its head every second with the SVID of api.tcp.identity and submits it to the other node's
 * TCP API; `meshauth audit verify --witnesses`, run from a node namespace, passes the real trail
 * and catches a copy rebuilt by root with recomputed hashes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT, type Cluster } from '../../demo/cluster.js';
import { NODES } from '../../demo/topology.js';
import { AuditStore, type AuditEventInput } from '../../src/audit/index.js';
import { DevCa } from '../../src/identity/index.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

const ADMIN = 'spiffe://demo.local/ops/admin';
const addrOf = (node: string) => `${NODES.find((n) => n.name === node)!.underlayIp}:4251`;
// the SPIFFE ID each node's API presents and signs its audit head with
const SELF: Record<string, string> = { 'node-a': id('api'), 'node-b': id('cache') };
const OTHER: Record<string, string> = { 'node-a': 'node-b', 'node-b': 'node-a' };

describe('witnessed audit heads between two meshauthd', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-awit-'));
    env = await startDemoCluster('awit', {
      rules: [{ name: 'web-to-db', from: id('web'), to: id('db') }],
      apiTcp: (node) => ({
        listen: addrOf(node),
        allowedIds: [ADMIN, SELF[OTHER[node]!]!],
        identity: SELF[node]!,
      }),
      extraConfig: (node) => ({
        audit: {
          path: join(dir, `${node}-audit.db`),
          witnesses: [addrOf(OTHER[node]!)],
          headInterval: '1s',
        },
      }),
    });
    cluster = env.cluster;
    const ca = await DevCa.load({
      caCert: join(cluster.caDir, 'ca.crt'),
      caKey: join(cluster.caDir, 'ca.key'),
    });
    writeFileSync(join(dir, 'bundle.pem'), ca.caPem);
    const admin = await ca.issue(ADMIN);
    writeFileSync(join(dir, 'admin.crt'), admin.chainPem);
    writeFileSync(join(dir, 'admin.key'), admin.keyPem, { mode: 0o600 });
  }, 120_000);

  afterAll(async () => {
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** `meshauth audit verify --witnesses` of a trail file, run in node-a's namespace. */
  const verify = (db: string): { status: number; out: string } => {
    try {
      const out = cluster.topo.lab.exec(cluster.topo.nodeNs['node-a']!, process.execPath, [
        join(PACKAGE_ROOT, 'dist/src/cli/main.js'),
        '--tls-cert',
        join(dir, 'admin.crt'),
        '--tls-key',
        join(dir, 'admin.key'),
        '--tls-bundle',
        join(dir, 'bundle.pem'),
        'audit',
        'verify',
        '--db',
        db,
        '--node-id',
        SELF['node-a']!,
        '--witnesses',
        addrOf('node-b'),
        '-o',
        'json',
      ]);
      return { status: 0, out };
    } catch (err) {
      return { status: 1, out: String((err as { stdout?: unknown }).stdout ?? (err as Error).message) };
    }
  };

  /** node-a's heads node-b has recorded so far. */
  const witnessedOnB = (): number => {
    const s = AuditStore.open({ path: join(dir, 'node-b-audit.db'), readonly: true });
    try {
      return s.query({ types: ['head-witnessed'], identity: SELF['node-a']!, limit: 1000 }).length;
    } finally {
      s.close();
    }
  };

  it("node-b witnesses node-a's heads; the trail matches them, a rebuilt copy does not", async () => {
    await expect.poll(witnessedOnB, { timeout: 20_000, interval: 200 }).toBeGreaterThanOrEqual(3);
    expect(cluster.logs('node-a', 'audit_head_refused')).toHaveLength(0);

    // node-a stops: its trail is final, node-b keeps the heads it witnessed
    expect(await cluster.stop('node-a')).toBe(0);
    const src = AuditStore.open({ path: join(dir, 'node-a-audit.db'), readonly: true });
    let rows;
    try {
      rows = src.query({ limit: 10_000 });
    } finally {
      src.close();
    }
    expect(rows.length).toBeGreaterThan(0);
    const rebuild = (path: string, alterSeq?: number) => {
      const s = AuditStore.open({ path });
      s.append(
        rows.map((r): AuditEventInput => {
          const e: AuditEventInput = { type: r.type, atMs: r.atMs };
          if (r.outcome) e.outcome = r.outcome;
          if (r.reason) e.reason = r.reason;
          if (r.localId) e.localId = r.localId;
          if (r.remoteId) e.remoteId = r.remoteId;
          if (r.node) e.node = r.node;
          if (r.direction) e.direction = r.direction;
          if (r.details) e.details = r.details;
          if (r.seq === alterSeq) e.reason = 'rewritten-by-root';
          return e;
        }),
      );
      s.close();
    };
    const honest = join(dir, 'copy.db');
    rebuild(honest);
    const ok = verify(honest);
    expect(ok.status, ok.out).toBe(0);
    expect(JSON.parse(ok.out)).toMatchObject({ ok: true, refused: [] });

    const forged = join(dir, 'forged.db');
    rebuild(forged, 1);
    const bad = verify(forged);
    expect(bad.status, bad.out).toBe(1);
    // the failed command's error carries its output
    expect(bad.out).toMatch(/"ok":false/);
    expect(bad.out).toMatch(/"kind":"rewritten"/);
  });
});
