/**
 * The CLI against a peer gone wrong (a node's API through --address, or a relay passing a node's
 * answer on): times no Date can hold and details that are not JSON are shown as they are, and the
 * command still prints every row, instead of failing with "Invalid time value" or a JSON error.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer, type AuditHandlers, type EventMsg } from '../../../src/api/index.js';
import { run, type CliIo } from '../../../src/cli/main.js';
import { eventProblem } from '../../../src/relay/index.js';
import { FakeDaemon } from '../api/fake-daemon.js';

const HASH = 'ab'.repeat(32);
const FAR = 2 ** 53 - 1; // a safe integer, far past what a Date holds (8.64e15)

function ev(seq: number, atMs: number, detailsJson = ''): EventMsg {
  return {
    seq,
    atMs,
    type: 'reauth',
    outcome: 'info',
    reason: '',
    localId: '',
    remoteId: '',
    node: '',
    direction: '',
    detailsJson,
    prevHash: HASH,
    hash: HASH,
    origin: '',
  };
}

const EVENTS = [ev(1, 1_780_000_000_000), ev(2, FAR), ev(3, 1_780_000_000_001, '{not json')];

let dir: string;
let server: ApiServer;
let sock: string;
const daemon = new FakeDaemon();

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env: { MESHAUTH_SOCKET: sock },
    now: () => 1_780_000_000_000,
  };
  return { code: await run(args, io), out, err };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-cli-hostile-'));
  sock = join(dir, 'api.sock');
  const auditHandlers: AuditHandlers = {
    QueryEvents: (call: grpc.ServerWritableStream<{ newestFirst?: boolean }, unknown>) => {
      for (const e of call.request.newestFirst ? [...EVENTS].reverse() : EVENTS) call.write({ event: e });
      call.write({ pageEnd: { nextPageToken: '', nodes: [], partial: false } });
      call.end();
    },
    ListEntries: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { entries: daemon.listEntries().map((e) => ({ ...e, origin: '' })) }),
    closeFollowers: () => {},
  };
  daemon.entries[0]!.expiresAtMs = FAR;
  server = await startApiServer({ auditHandlers, daemon, unix: { path: sock } });
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('meshauth against a peer that sends times past the Date range and details that are not JSON', () => {
  it('regression: events prints every row, table and JSON', async () => {
    // before: "meshauth: Invalid time value" (exit 1) with nothing printed, and with -o json
    // "Unexpected token" once the bad details came
    const table = await cli(['events']);
    expect(table.err).toBe('');
    expect(table.code).toBe(0);
    expect(table.out.trimEnd().split('\n')).toHaveLength(4);
    expect(table.out).toContain(`(not a time: ${FAR})`);
    const json = await cli(['events', '-o', 'json']);
    expect(json.err).toBe('');
    expect(json.code).toBe(0);
    const rows = json.out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.map((r) => r['seq'])).toEqual([1, 2, 3]);
    expect(rows[1]).toMatchObject({ time: `(not a time: ${FAR})`, atMs: FAR });
    expect(rows[2]).toMatchObject({ detailsText: '{not json' });
  });

  it('regression: entries shows an expiry past the Date range as it is', async () => {
    for (const args of [['entries'], ['entries', '-o', 'json']]) {
      const r = await cli(args);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toContain(`(not a time: ${FAR})`);
    }
  });

  it('the relay refuses such a node event as malformed', () => {
    expect(eventProblem(ev(2, FAR))).toBe(`seq 2: at_ms ${FAR} is not a time`);
    expect(eventProblem(ev(2, 8.64e15))).toBeUndefined();
  });
});

describe('meshauth --socket at something that is not meshauthd', () => {
  it('regression: a directory or a regular file is named as such, not "connection refused"', async () => {
    const file = join(dir, 'plain');
    writeFileSync(file, 'x');
    for (const [path, kind] of [
      [dir, 'a directory'],
      [file, 'a regular file'],
    ] as const) {
      const r = await cli(['--socket', path, 'status']);
      expect(r.code).toBe(1);
      expect(r.err).toBe(
        `meshauth: --socket ${path}: not a Unix socket (${kind}); meshauthd's api.socket is a socket file\n`,
      );
    }
  });

  it('regression: a socket that answers in something other than gRPC is named as such', async () => {
    const path = join(dir, 'http.sock');
    const srv = createServer((c) => {
      c.on('error', () => {});
      c.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((resolve) => srv.listen(path, resolve));
    try {
      const r = await cli(['--socket', path, '--timeout', '5s', 'status']);
      expect(r.code).toBe(1);
      // before: "cannot reach meshauthd ...: Protocol error ... is meshauthd running?"
      expect(r.err).toMatch(
        new RegExp(
          `^meshauth: unix socket ${path} answered, but not as meshauthd's gRPC API: Protocol error`,
        ),
      );
    } finally {
      srv.close();
    }
  });
});
