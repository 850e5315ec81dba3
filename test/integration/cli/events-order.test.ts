/**
 * `meshauth events` lists events in the order they were written to the trail (SEQ), which is the
 * order the hash chain links them in, not by TIME: an event dated earlier than rows written before
 * it (a signal summary is dated at its first signal and written when its window closes) stays at
 * its place in the trail.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startApiServer, type ApiServer } from '../../../src/api/index.js';
import { AuditStore } from '../../../src/audit/index.js';
import { run } from '../../../src/cli/main.js';
import { FakeDaemon } from '../api/fake-daemon.js';

const NOW = Date.parse('2026-06-01T12:00:00Z');
let dir: string;
let store: AuditStore;
let server: ApiServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-events-order-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  store.append([
    { type: 'reauth', outcome: 'info', reason: 'first', atMs: NOW - 5_000 },
    { type: 'handshake-succeeded', outcome: 'success', atMs: NOW - 2_000 },
    // written after the handshake, dated before it
    { type: 'signal', outcome: 'info', atMs: NOW - 4_000 },
    { type: 'entry-written', outcome: 'success', atMs: NOW - 1_000 },
  ]);
  server = await startApiServer({ store, daemon: new FakeDaemon(), unix: { path: join(dir, 'api.sock') } });
});

afterAll(async () => {
  await server?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function events(args: string[]): Promise<{ seq: number; type: string; atMs: number }[]> {
  let out = '';
  const code = await run(['events', '-o', 'json', ...args], {
    out: (t) => (out += t),
    err: () => {},
    env: { MESHAUTH_SOCKET: join(dir, 'api.sock') },
    now: () => NOW,
  });
  expect(code).toBe(0);
  return out
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { seq: number; type: string; atMs: number });
}

it('lists all events in trail order, TIME running backwards where a row was dated earlier', async () => {
  const all = await events(['--limit', '0']);
  expect(all.map((e) => [e.seq, e.type])).toEqual([
    [1, 'reauth'],
    [2, 'handshake-succeeded'],
    [3, 'signal'],
    [4, 'entry-written'],
  ]);
  expect(all[2]!.atMs).toBeLessThan(all[1]!.atMs);
});

it('--limit N shows the last N written, in trail order', async () => {
  const last = await events(['-n', '3']);
  expect(last.map((e) => e.seq)).toEqual([2, 3, 4]);
});
