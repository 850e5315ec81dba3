/**
 * A server that streams more than it was asked for (a lying witness, a node gone wrong) is cut off
 * by the API client at the requested count, with OUT_OF_RANGE, rather than held in memory without
 * bound; the relay names such a node `malformed` and leaves it out of the answer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiClient,
  ApiClientError,
  startApiServer,
  type ApiServer,
  type AuditHandlers,
  type EventMsg,
} from '../../../src/api/index.js';
import { AuditStore } from '../../../src/audit/index.js';
import { Relay, type NodeApi } from '../../../src/relay/index.js';
import { FakeDaemon } from './fake-daemon.js';

const HASH = 'ab'.repeat(32);
const NODE = 'spiffe://cluster.test/meshauth/node/node-a';

function ev(seq: number): EventMsg {
  return {
    seq,
    atMs: 1000 + seq,
    type: 'reauth',
    outcome: 'info',
    reason: '',
    localId: '',
    remoteId: '',
    node: '',
    direction: '',
    detailsJson: '',
    prevHash: HASH,
    hash: HASH,
    origin: '',
  };
}

let dir: string;
let store: AuditStore;
let server: ApiServer;
let client: ApiClient;
/** Events per QueryEvents answer; the page size asked for is ignored. */
let flood = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-api-overlong-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  const auditHandlers: AuditHandlers = {
    QueryEvents: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      for (let i = 1; i <= flood; i++) call.write({ event: ev(i) });
      call.write({ pageEnd: { nextPageToken: '', nodes: [], partial: false } });
      call.end();
    },
    closeFollowers: () => {},
  };
  server = await startApiServer({
    auditHandlers,
    daemon: new FakeDaemon(),
    witness: {
      submit: () => ({ accepted: false, reason: 'not-allowed', message: '' }),
      // a lying witness: answers 7 heads whatever limit is asked for
      list: () =>
        Array.from({ length: 7 }, (_, i) => ({
          note: `n${i}\n`,
          certChain: [Buffer.from('x')],
          witnessedAtMs: i,
          witnessSeq: i + 1,
        })),
    },
    unix: { path: join(dir, 'api.sock') },
  });
  client = new ApiClient({ socket: join(dir, 'api.sock') });
});

afterAll(async () => {
  client?.close();
  await server?.close();
  store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('API client against a server that sends more than asked', () => {
  it('takes at most `limit` witnessed heads and fails with OUT_OF_RANGE past it', async () => {
    expect(await client.listWitnessedHeads(NODE, 7)).toHaveLength(7);
    const err = await client.listWitnessedHeads(NODE, 5).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiClientError);
    expect((err as ApiClientError).grpcCode).toBe(grpc.status.OUT_OF_RANGE);
    expect((err as Error).message).toMatch(
      /ListWitnessedHeads: the server sent more than the 5 items asked for/,
    );
  });

  it('takes at most page_size events, and the relay leaves such a node out as malformed', async () => {
    flood = 10;
    expect((await client.queryEvents({ pageSize: 10 })).events).toHaveLength(10);
    flood = 11;
    const err = await client.queryEvents({ pageSize: 10 }).catch((e: unknown) => e);
    expect((err as ApiClientError).grpcCode).toBe(grpc.status.OUT_OF_RANGE);
    // page_size 0 means the server's default page of 100
    flood = 101;
    await expect(client.queryEvents({})).rejects.toThrow(/more than the 100 items/);

    const relay = new Relay({
      nodes: () => [{ name: 'node-a', address: 'unused:1' }],
      connect: () => apiOf(client),
    });
    flood = 11;
    const page = await relay.queryEvents({ pageSize: 10 });
    expect(page.events).toEqual([]);
    expect(page.nodes).toMatchObject([{ node: 'node-a', ok: false, reason: 'malformed' }]);
    relay.close();
  });
});

/** The node API over an existing client (the relay's own tcpNodeApi, minus its TLS set-up). */
function apiOf(c: ApiClient): NodeApi {
  return {
    queryEvents: (req) => c.queryEvents(req),
    followEvents: (req, s) => c.followEvents(req, s),
    listEntries: () => c.listEntries(),
    status: () => c.status(),
    close: () => {},
  };
}
