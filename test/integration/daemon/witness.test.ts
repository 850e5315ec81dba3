/**
 * The daemon's witnessed-head wiring (src/daemon/witness.ts) between two nodes' real API servers:
 * node-a signs its head with the SVID of api.tcp.identity and submits it over mTLS to node-b, which
 * records it; SignHead on node-a's Unix socket answers the same head.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, startApiServer, type ApiServer } from '../../../src/api/index.js';
import { AuditStore } from '../../../src/audit/index.js';
import type { DaemonConfig } from '../../../src/config/index.js';
import { daemonWitness, type DaemonWitness } from '../../../src/daemon/witness.js';
import { DevCa } from '../../../src/identity/index.js';
import { silentLogger } from '../../../src/log.js';
import type { Svid } from '../../../src/spiffe/index.js';
import { FakeDaemon } from '../api/fake-daemon.js';

const TD = 'cluster.test';
const A = `spiffe://${TD}/meshauth/node/node-a`;
const B = `spiffe://${TD}/meshauth/node/node-b`;

let dir: string;
let ca: DevCa;
const open: { store: AuditStore; server: ApiServer; w: DaemonWitness }[] = [];

function configOf(node: string, witnesses: { host: string; port: number }[]): DaemonConfig {
  return { node, audit: { witnesses, headIntervalMs: 3_600_000 } } as unknown as DaemonConfig;
}

async function node(name: string, id: string, svid: Svid, witnesses: { host: string; port: number }[]) {
  const store = AuditStore.open({ path: join(dir, `${name}.db`) });
  const bundles = () => new Map([[TD, [ca.caDer]]]);
  const w = daemonWitness({
    config: configOf(name, witnesses),
    logger: silentLogger(),
    store,
    sink: { record: (e) => void store.append([e]) },
    bundles,
    self: { spiffeId: id, svid: () => ({ certChainPem: svid.chainPem, keyPem: svid.keyPem }) },
  });
  const server = await startApiServer({
    store,
    daemon: new FakeDaemon(),
    witness: w.view,
    unix: { path: join(dir, `${name}.sock`) },
    tcp: {
      host: '127.0.0.1',
      port: 0,
      svid: () => ({ certChainPem: svid.chainPem, keyPem: svid.keyPem }),
      bundles,
      allow: [A, B],
    },
  });
  open.push({ store, server, w });
  return { store, server, w };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-daemon-witness-'));
  ca = await DevCa.create(TD);
});

afterAll(async () => {
  for (const o of open) {
    o.w.close();
    await o.server.close();
    o.store.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('daemonWitness', () => {
  it("signs node-a's head with its SVID and node-b records it; SignHead answers on the Unix socket", async () => {
    const b = await node('node-b', B, await ca.issue(B), []);
    expect(b.w.publisher).toBeUndefined();
    const a = await node('node-a', A, await ca.issue(A), [{ host: '127.0.0.1', port: b.server.tcpPort! }]);
    a.store.append([
      { type: 'reauth', outcome: 'info' },
      { type: 'gap', outcome: 'failure' },
    ]);
    const r = await a.w.publisher!.publish();
    expect(r).toMatchObject({ seq: 2, results: [{ accepted: true }] });
    const heads = b.w.view.list(A, 10);
    expect(heads).toHaveLength(1);
    expect(heads[0]!.note.split('\n').slice(0, 2)).toEqual(['cluster.test/meshauth/node/node-a', '2']);
    const local = new ApiClient({ socket: join(dir, 'node-a.sock') });
    try {
      const signed = await local.signHead();
      expect(signed.note.split('\n')[1]).toBe('2');
      // a head submitted over the Unix socket has no authenticated node behind it
      expect(await local.submitHead({ note: signed.note, certChain: signed.certChain })).toMatchObject({
        accepted: false,
        reason: 'not-allowed',
      });
    } finally {
      local.close();
    }
  });
});
