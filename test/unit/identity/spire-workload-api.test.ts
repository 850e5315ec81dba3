import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, createWorkloadApiSource, type IdentityEvent } from '../../../src/identity/index.js';
import {
  parseWorkloadEndpoint,
  resolveWorkloadEndpoint,
  serviceDefinitions,
  WorkloadApiClient,
  WorkloadEndpointError,
} from '../../../src/spiffe/workload/index.js';

describe('workload endpoint addresses', () => {
  it.each([
    ['unix:///run/spire/agent.sock', 'unix:///run/spire/agent.sock', 'unix'],
    ['/run/spire/agent.sock', 'unix:///run/spire/agent.sock', 'unix'],
    ['tcp://127.0.0.1:8081', 'ipv4:127.0.0.1:8081', 'tcp'],
    ['tcp://[::1]:8081', 'ipv6:[::1]:8081', 'tcp'],
  ])('%s -> %s', (addr, target, kind) => {
    const e = parseWorkloadEndpoint(addr);
    expect(e.grpcTarget).toBe(target);
    expect(e.kind).toBe(kind);
  });

  it.each([
    ['', /empty/],
    ['unix:relative.sock', /opaque/],
    ['unix://host/path.sock', /authority/],
    ['unix:///', /must include a path/],
    ['unix:///a.sock?x=1', /query/],
    ['unix:///a.sock#f', /fragment/],
    ['tcp://localhost:8081', /must be an IP/],
    ['tcp://127.0.0.1', /port/],
    ['tcp://127.0.0.1:8081/path', /path/],
    ['tcp://u:p@127.0.0.1:8081', /user info/],
    ['http://127.0.0.1:8081', /unsupported scheme "http"/],
    ['relative/path.sock', /not a URI/],
  ])('rejects %j', (addr, msg) => {
    expect(() => parseWorkloadEndpoint(addr)).toThrow(WorkloadEndpointError);
    expect(() => parseWorkloadEndpoint(addr)).toThrow(msg);
  });

  it('takes the configured address over SPIFFE_ENDPOINT_SOCKET and fails clearly without either', () => {
    const env = { SPIFFE_ENDPOINT_SOCKET: 'unix:///from/env.sock' };
    expect(resolveWorkloadEndpoint(undefined, env).address).toBe('/from/env.sock');
    expect(resolveWorkloadEndpoint('/configured.sock', env).address).toBe('/configured.sock');
    expect(() => resolveWorkloadEndpoint(undefined, {})).toThrow(/SPIFFE_ENDPOINT_SOCKET is not set/);
  });
});

// A stand-in Workload API server that enforces the security header like SPIRE does.
describe('WorkloadApiClient / WorkloadApiSource against a stand-in Workload API server', () => {
  let dir: string;
  let server: grpc.Server;
  let ca: DevCa;
  let mode: 'ok' | 'denied' = 'ok';
  let tcpPort = 0;
  const headers: string[] = [];
  const open = new Set<grpc.ServerWritableStream<unknown, unknown>>();
  const ME = 'spiffe://demo.local/meshauthd';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-wlapi-'));
    ca = await DevCa.create('demo.local');
    const svid = await ca.issue(ME, { ttlMs: 60_000 });
    const guard = (call: grpc.ServerWritableStream<unknown, unknown>): boolean => {
      const h = call.metadata.get('workload.spiffe.io')[0];
      headers.push(String(h));
      if (h !== 'true') {
        call.emit('error', {
          code: grpc.status.INVALID_ARGUMENT,
          details: 'security header missing from request',
        });
        return false;
      }
      return true;
    };
    server = new grpc.Server();
    server.addService(serviceDefinitions().workload, {
      FetchX509SVID: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        if (!guard(call)) return;
        if (mode === 'denied') {
          call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' });
          return;
        }
        open.add(call);
        call.on('cancelled', () => open.delete(call));
        call.write({
          svids: [
            {
              spiffeId: ME,
              x509Svid: Buffer.concat(svid.chainDer),
              x509SvidKey: svid.key.export({ format: 'der', type: 'pkcs8' }),
              bundle: ca.caDer,
              hint: '',
            },
          ],
          crl: [],
          federatedBundles: { 'spiffe://other.local': Buffer.alloc(0) },
        });
      },
      FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        if (!guard(call)) return;
        call.write({ crl: [], bundles: { 'spiffe://demo.local': ca.caDer } });
      },
      FetchJWTSVID: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED }),
      FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) =>
        call.emit('error', { code: grpc.status.UNIMPLEMENTED }),
      ValidateJWTSVID: (_c: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb({ code: grpc.status.UNIMPLEMENTED }),
    });
    tcpPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) =>
        e ? reject(e) : resolve(port),
      ),
    );
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${join(dir, 'api.sock')}`, grpc.ServerCredentials.createInsecure(), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.tryShutdown(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends workload.spiffe.io: true and decodes SVIDs, own bundle and (rejected) empty federated bundle', async () => {
    const client = new WorkloadApiClient({
      env: { SPIFFE_ENDPOINT_SOCKET: `unix://${join(dir, 'api.sock')}` },
    });
    try {
      const ctx = await client.fetchX509Context();
      expect(headers.at(-1)).toBe('true');
      expect(ctx.svids.map((s) => s.spiffeId)).toEqual([ME]);
      expect([...ctx.bundles.keys()]).toEqual(['demo.local']);
      expect(ctx.rejected.map((r) => r.reason)).toEqual(['empty-bundle']);
    } finally {
      client.close();
    }
  });

  it('says why it could not connect when no agent listens on the socket, without an empty resolution note', async () => {
    const client = new WorkloadApiClient({ address: join(dir, 'no-agent.sock') });
    try {
      const err = await client.fetchX509Context({ timeoutMs: 2000 }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).toBe('workload API FetchX509SVID: UNAVAILABLE: no such socket (connect ENOENT)');
    } finally {
      client.close();
    }
  });

  it('works over tcp://ip:port as well', async () => {
    const client = new WorkloadApiClient({ address: `tcp://127.0.0.1:${tcpPort}` });
    try {
      const b = await client.fetchX509Bundles();
      expect([...b.bundles.keys()]).toEqual(['demo.local']);
    } finally {
      client.close();
    }
  });

  it('drops every SVID on PermissionDenied and reports no-identity', async () => {
    mode = 'ok';
    const src = createWorkloadApiSource({
      address: join(dir, 'api.sock'),
      retry: { baseMs: 20, maxMs: 100 },
    });
    const events: IdentityEvent[] = [];
    src.subscribe((e) => events.push(e));
    try {
      src.setWanted([ME]);
      await src.ready();
      expect(src.svid(ME)?.spiffeId).toBe(ME);
      // The server ends the stream; the client reconnects and is now refused.
      mode = 'denied';
      for (const c of open) c.end();
      open.clear();
      await expect.poll(() => events.some((e) => e.type === 'svid-removed'), { timeout: 5_000 }).toBe(true);
      const removed = events.find((e) => e.type === 'svid-removed');
      expect(removed?.type === 'svid-removed' && removed.reason).toBe('no-identity');
      expect(src.svid(ME)).toBeUndefined();
      expect(
        events.some(
          (e) =>
            e.type === 'source-state' && e.state === 'no-identity' && e.detail.includes('PermissionDenied'),
        ),
      ).toBe(true);
    } finally {
      await src.close();
    }
  });
});
