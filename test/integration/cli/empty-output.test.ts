/**
 * What the CLI prints when the daemon has nothing to show in a field or section: the field or
 * section is left out, never a heading (or label) with nothing under it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer, type ApiServer, type StatusView } from '../../../src/api/index.js';
import { AuditStore } from '../../../src/audit/index.js';
import { run, type CliIo } from '../../../src/cli/main.js';
import { FakeDaemon } from '../api/fake-daemon.js';

/** A daemon with no identities, counters or entries, and a component version it could not read. */
class EmptyDaemon extends FakeDaemon {
  override status(): StatusView {
    return {
      ...super.status(),
      datapath: { attached: false, mode: 'none' },
      identities: [],
      counters: {},
      entries: 0,
      versions: { node: process.version, kernel: '' },
    };
  }
}

let dir: string;
let store: AuditStore;
let server: ApiServer;
const NOW = Date.parse('2027-01-15T09:00:00Z');

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env: { MESHAUTH_SOCKET: join(dir, 'api.sock') },
    now: () => NOW,
  };
  const code = await run(args, io);
  return { code, out, err };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-cli-empty-'));
  store = AuditStore.open({ path: join(dir, 'audit.db') });
  const daemon = new EmptyDaemon();
  daemon.entries = [];
  server = await startApiServer({ store, daemon, unix: { path: join(dir, 'api.sock') } });
});

afterAll(async () => {
  await server?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('empty fields and sections', () => {
  it('status leaves out an empty field and the sections with no rows', async () => {
    const r = await cli(['status']);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    const lines = r.out.split('\n');
    expect(lines.at(-1)).toBe('');
    // every line but the final newline is a field with a value
    for (const line of lines.slice(0, -1)) expect(line).toMatch(/^\S+( \S+)*\s{2,}\S/);
    expect(r.out).toContain('version node');
    expect(r.out).not.toContain('version kernel');
    expect(r.out).not.toMatch(/IDENTITY|COUNTER/);
  });

  it('entries and events print no table heading over no rows, and say so on stderr', async () => {
    const entries = await cli(['entries']);
    expect(entries).toEqual({ code: 0, out: '', err: 'meshauth: no auth entries\n' });
    const events = await cli(['events']);
    expect(events).toEqual({ code: 0, out: '', err: 'meshauth: no events match\n' });
    // machine-readable output stays empty and quiet
    expect(await cli(['events', '-o', 'json'])).toEqual({ code: 0, out: '', err: '' });
  });
});
