/**
 * `meshauth events` limits and time bounds at their extremes, against a real API server and audit
 * store: a --limit beyond one API page (MAX_PAGE_SIZE) or beyond the wire's int32, and --since /
 * --until that reach before 1970 or cross each other.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiClient,
  ApiClientError,
  MAX_PAGE_SIZE,
  startApiServer,
  type ApiServer,
} from '../../../src/api/index.js';
import { AuditStore, type AuditEventInput } from '../../../src/audit/index.js';
import { run, type CliIo } from '../../../src/cli/main.js';
import { FakeDaemon } from '../api/fake-daemon.js';
import { until } from '../../helpers/until.js';

const NOW = Date.parse('2026-06-01T12:00:00Z');
const EVENTS = MAX_PAGE_SIZE + 150;
let dir: string;
let store: AuditStore;
let server: ApiServer;
let sock: string;

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env: { MESHAUTH_SOCKET: sock },
    now: () => NOW,
  };
  return { code: await run(args, io), out, err };
}

const seqsOf = (out: string): number[] =>
  out
    .trimEnd()
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { seq: number }).seq);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-cli-limit-'));
  sock = join(dir, 'api.sock');
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  const batch: AuditEventInput[] = [];
  for (let i = 0; i < EVENTS; i++) {
    batch.push({
      type: 'peer-unreachable',
      outcome: 'failure',
      reason: 'timeout',
      node: 'node-2',
      atMs: NOW - EVENTS + i,
    });
  }
  store.append(batch);
  server = await startApiServer({ store, daemon: new FakeDaemon(), unix: { path: sock } });
});

afterAll(async () => {
  await server?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('meshauth events --limit beyond one page', () => {
  it('regression: a limit past the wire int32 shows every event, not the few it wrapped to', async () => {
    // before: 2^32 + 1 went out as page_size 1 and one event was shown, with exit 0
    const r = await cli(['events', '--limit', String(2 ** 32 + 1), '-o', 'json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const seqs = seqsOf(r.out);
    expect(seqs).toHaveLength(EVENTS);
    expect(seqs[0]).toBe(1);
    expect(seqs.at(-1)).toBe(EVENTS);
  });

  it('regression: a limit past MAX_PAGE_SIZE shows the newest N in order, over several pages', async () => {
    // before: "invalid request: QueryEvents: QueryEvents: page_size must be 1..10000 ..." (exit 2)
    const n = MAX_PAGE_SIZE + 100;
    const r = await cli(['events', '-n', String(n), '-o', 'json']);
    expect(r.code).toBe(0);
    const seqs = seqsOf(r.out);
    expect(seqs).toHaveLength(n);
    expect(seqs[0]).toBe(EVENTS - n + 1);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(n);
  });

  it('regression: a limit of exactly one page (page_size MAX_PAGE_SIZE) is served; less is one page too', async () => {
    // before: QueryEvents asked its store for page_size + 1 rows, past the store's own bound, and
    // refused the valid page_size 10,000 as INVALID_ARGUMENT ("audit: query: limit must be ...")
    expect(seqsOf((await cli(['events', '-n', String(MAX_PAGE_SIZE), '-o', 'json'])).out)).toHaveLength(
      MAX_PAGE_SIZE,
    );
    expect(seqsOf((await cli(['events', '-n', '3', '-o', 'json'])).out)).toEqual([
      EVENTS - 2,
      EVENTS - 1,
      EVENTS,
    ]);
  });

  it('regression: --limit 0 prints page by page and stops fetching once the reader is gone', async () => {
    // before: every matching event was fetched and held before the first was printed (up to the
    // trail's ten million), also when the reader had gone away (| head -1)
    const ctl = new AbortController();
    let out = '';
    const io: CliIo = {
      out: (t) => {
        out += t;
        ctl.abort(); // what processIo does when stdout's reader goes away
      },
      err: () => {},
      env: { MESHAUTH_SOCKET: sock },
      now: () => NOW,
      signal: ctl.signal,
    };
    expect(await run(['events', '-n', '0', '-o', 'json'], io)).toBe(0);
    const seqs = seqsOf(out);
    expect(seqs).toHaveLength(1000); // the first page, and no further page fetched
    expect(seqs[0]).toBe(1);
    // without the reader going away, every event, in order
    const all = seqsOf((await cli(['events', '-n', '0', '-o', 'json'])).out);
    expect(all).toHaveLength(EVENTS);
    expect(all).toEqual([...all].sort((a, b) => a - b));
  });

  it('a limit that is not a whole number of digits is a usage error', async () => {
    for (const bad of ['-1', '1.5', 'NaN', '0x10', '1e3', '', '9'.repeat(20)]) {
      const r = await cli(['events', '-n', bad]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`--limit: must be a whole number, 0 for all (got ${JSON.stringify(bad)})`);
    }
  });

  it('regression: the API client refuses a page size the wire cannot carry instead of wrapping it', async () => {
    const client = new ApiClient({ socket: sock, timeoutMs: 5000 });
    try {
      for (const pageSize of [2 ** 32 + 1, MAX_PAGE_SIZE + 1, -1, 1.5]) {
        const err = await client.queryEvents({ pageSize }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ApiClientError);
        expect((err as ApiClientError).grpcCode).toBe(grpc.status.INVALID_ARGUMENT);
        expect((err as Error).message).toBe(
          `QueryEvents: page_size must be 0..${MAX_PAGE_SIZE} (0 = 100), got ${pageSize}`,
        );
      }
    } finally {
      client.close();
    }
  });
});

describe('meshauth events --since / --until at their extremes', () => {
  it('regression: a time before 1970 is a usage error naming the flag', async () => {
    // before: "invalid request: QueryEvents: QueryEvents: filter.since_ms and filter.until_ms must not be negative"
    for (const [flag, value] of [
      ['--since', '99999999999999999999w'],
      ['--since', '1969-12-31T23:59:59Z'],
      ['--until', '100000w'],
    ] as const) {
      const r = await cli(['events', flag, value]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(
        `meshauth: ${flag}: "${value}" is before 1970-01-01T00:00:00Z, earlier than any event`,
      );
      expect(r.err).not.toContain('since_ms');
    }
  });

  it('regression: --until not later than --since is a usage error in the times given', async () => {
    // before: "filter.until_ms (1780315190000) must be after filter.since_ms (1780315195000)"
    const r = await cli(['events', '--since', '5s', '--until', '10s']);
    expect(r.code).toBe(2);
    expect(r.err).toContain(
      'meshauth: --until 10s (2026-06-01T11:59:50.000Z) must be later than --since 5s (2026-06-01T11:59:55.000Z)',
    );
  });

  it('server-side refusals name the operation once', async () => {
    const r = await cli(['events', '--type', 'bogus']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^meshauth: invalid request: QueryEvents: filter\.types: unknown type\(s\) bogus;/);
  });
});

describe('meshauth events --follow when the server ends the stream', () => {
  it('regression: exits 1 saying the stream ended, instead of 0 without a word; Ctrl-C still exits 0', async () => {
    const sub = mkdtempSync(join(tmpdir(), 'meshauth-cli-follow-end-'));
    const path = join(sub, 'api.sock');
    const own = AuditStore.open({ path: join(sub, 'audit.db') });
    own.append([{ type: 'peer-unreachable', outcome: 'failure', reason: 'timeout', atMs: NOW }]);
    let srv: ApiServer | undefined = await startApiServer({
      store: own,
      daemon: new FakeDaemon(),
      unix: { path },
      followPollMs: 20,
    });
    const follow = (signal?: AbortSignal) => {
      let out = '';
      let err = '';
      const io: CliIo = {
        out: (t) => (out += t),
        err: (t) => (err += t),
        env: { MESHAUTH_SOCKET: path },
        now: () => NOW,
        signal: signal ?? new AbortController().signal,
      };
      return { done: run(['events', '-f', '-o', 'json'], io), out: () => out, err: () => err };
    };
    try {
      const f = follow();
      await until('the first event', () => f.out().includes('"seq":1'));
      await srv.close(); // meshauthd stopping: its follow streams end
      srv = undefined;
      expect(await f.done).toBe(1);
      expect(f.err()).toBe(
        'meshauth: meshauthd ended the event stream (it stopped or restarted): events written from now on are not shown; run the command again to go on following\n',
      );

      srv = await startApiServer({ store: own, daemon: new FakeDaemon(), unix: { path }, followPollMs: 20 });
      const ctl = new AbortController();
      const g = follow(ctl.signal);
      await until('the first event', () => g.out().includes('"seq":1'));
      ctl.abort(); // Ctrl-C
      expect(await g.done).toBe(0);
      expect(g.err()).toBe('');
    } finally {
      await srv?.close();
      own.close();
      rmSync(sub, { recursive: true, force: true });
    }
  });
});
