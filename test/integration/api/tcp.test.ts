import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, startApiServer, type ApiServer, type BundleMap } from '../../../src/api/index.js';
import { AuditStore } from '../../../src/audit/index.js';
import { DevCa } from '../../../src/identity/index.js';
import type { Svid } from '../../../src/spiffe/index.js';
import { FakeDaemon } from './fake-daemon.js';

const SERVER_ID = 'spiffe://a.test/meshauthd/node-1';
const ADMIN_ID = 'spiffe://a.test/ops/admin';
const FEDERATED_ADMIN_ID = 'spiffe://b.test/ops/admin';

let dir: string;
let store: AuditStore;
let server: ApiServer;
let ca: DevCa;
let otherTd: DevCa;
let serverSvid: Svid;
let bundles: BundleMap;
const clients: ApiClient[] = [];

function clientFor(svid: Svid, caPem: string, serverSpiffeId = SERVER_ID): ApiClient {
  const c = new ApiClient({
    address: `127.0.0.1:${server.tcpPort}`,
    timeoutMs: 5000,
    tls: {
      certChainPem: Buffer.from(svid.chainPem),
      keyPem: Buffer.from(svid.keyPem),
      caPem: Buffer.from(caPem),
      serverSpiffeId,
    },
  });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-api-tcp-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  store.append([{ type: 'reauth', outcome: 'info', localId: 'spiffe://a.test/ns/x/sa/web' }]);
  ca = await DevCa.create('a.test');
  otherTd = await DevCa.create('b.test');
  serverSvid = await ca.issue(SERVER_ID);
  bundles = new Map([['a.test', [ca.caDer]]]);
  server = await startApiServer({
    store,
    daemon: new FakeDaemon(),
    unix: { path: join(dir, 'api.sock') },
    tcp: {
      host: '127.0.0.1',
      port: 0,
      svid: () => ({ certChainPem: serverSvid.chainPem, keyPem: serverSvid.keyPem }),
      bundles: () => bundles,
      allow: [ADMIN_ID, FEDERATED_ADMIN_ID],
    },
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await server?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('API TCP listener (mTLS with a SPIFFE ID allow-list)', () => {
  it('accepts a client whose SVID carries an allowed SPIFFE ID', async () => {
    expect(server.tcpPort).toBeGreaterThan(0);
    const c = clientFor(await ca.issue(ADMIN_ID), ca.caPem);
    const st = await c.status();
    expect(st.node).toBe('node-1');
    const page = await c.queryEvents({ filter: { identity: 'spiffe://a.test/ns/x/sa/web' } });
    expect(page.events.map((e) => e.type)).toEqual(['reauth']);
    expect(await c.listEntries()).toHaveLength(2);
  });

  it('refuses a valid SVID with a SPIFFE ID not on the list with PERMISSION_DENIED, on every service', async () => {
    const c = clientFor(await ca.issue('spiffe://a.test/ns/x/sa/web'), ca.caPem);
    await expect(c.status()).rejects.toMatchObject({
      grpcCode: grpc.status.PERMISSION_DENIED,
      message: expect.stringContaining('client spiffe://a.test/ns/x/sa/web is not on the allow-list'),
    });
    await expect(c.queryEvents({})).rejects.toMatchObject({ grpcCode: grpc.status.PERMISSION_DENIED });
    await expect(c.flush({ all: true })).rejects.toMatchObject({ grpcCode: grpc.status.PERMISSION_DENIED });
    await expect(c.healthCheck()).rejects.toMatchObject({ grpcCode: grpc.status.PERMISSION_DENIED });
  });

  it('refuses an allowed SPIFFE ID signed by a CA outside the trust bundle', async () => {
    const impostorCa = await DevCa.create('a.test');
    const c = clientFor(await impostorCa.issue(ADMIN_ID), ca.caPem);
    await expect(c.status()).rejects.toMatchObject({
      grpcCode: grpc.status.PERMISSION_DENIED,
      message: expect.stringMatching(/no client certificate that chains to a trust bundle/),
    });
  });

  it('picks up a new trust bundle and a rotated server SVID on refresh', async () => {
    const federated = clientFor(await otherTd.issue(FEDERATED_ADMIN_ID), ca.caPem);
    await expect(federated.status()).rejects.toMatchObject({ grpcCode: grpc.status.PERMISSION_DENIED });
    bundles = new Map([
      ['a.test', [ca.caDer]],
      ['b.test', [otherTd.caDer]],
    ]);
    const rotatedId = 'spiffe://a.test/meshauthd/node-1-rotated';
    serverSvid = await ca.issue(rotatedId);
    server.refreshTls();
    // new connections see the new CA list and the new server certificate
    const federated2 = clientFor(await otherTd.issue(FEDERATED_ADMIN_ID), ca.caPem, rotatedId);
    expect((await federated2.status()).node).toBe('node-1');
    const old = clientFor(await ca.issue(ADMIN_ID), ca.caPem, SERVER_ID);
    await expect(old.status()).rejects.toMatchObject({ grpcCode: grpc.status.UNAVAILABLE });
  });

  it('the Unix socket listener of the same server needs no certificate', async () => {
    const c = new ApiClient({ socket: server.socketPath! });
    clients.push(c);
    expect(await c.healthCheck()).toBe('SERVING');
  });
});
