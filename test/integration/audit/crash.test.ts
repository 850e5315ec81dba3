import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditStore } from '../../../src/audit/index.js';
import { AUDIT_JS, buildDist } from '../cli/build-dist.js';

let dir: string;
beforeAll(() => {
  buildDist();
  dir = mkdtempSync(join(tmpdir(), 'meshauth-crash-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Verify the chain from this process while the child keeps appending (a reader's snapshot must be consistent). */
function verifyWhileWriting(db: string): void {
  const reader = AuditStore.open({ path: db, readonly: true });
  try {
    const before = reader.lastSeq();
    for (let i = 0; i < 3; i++) {
      const rep = reader.verifyChain();
      expect(rep.problem).toBeUndefined();
      expect(rep.ok).toBe(true);
    }
    // the writer really was appending meanwhile
    expect(reader.lastSeq()).toBeGreaterThan(before);
  } finally {
    reader.close();
  }
}

async function writeUntilKilled(
  db: string,
  thread: boolean,
  minCommitted: number,
  verifyAt?: number,
): Promise<number> {
  const child = spawn(
    process.execPath,
    [join(import.meta.dirname, 'fixtures', 'crash-writer.mjs'), pathToFileURL(AUDIT_JS).href, db],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHAUTH_AUDIT_THREAD: thread ? '1' : '0' } },
  );
  let committed = 0;
  let buf = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, sig) => resolve(sig)),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) committed = Math.max(committed, Number(l.split(' ')[1]));
      if (verifyAt !== undefined && committed >= verifyAt) {
        verifyAt = undefined;
        try {
          verifyWhileWriting(db);
        } catch (err) {
          child.kill('SIGKILL');
          reject(err as Error);
          return;
        }
      }
      if (committed >= minCommitted) {
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`writer exited early: ${stderr}`)));
  }).catch(async (err: unknown) => {
    if (committed < minCommitted) throw err;
  });
  expect(await exited).toBe('SIGKILL');
  return committed;
}

describe.each([
  ['in the main thread', false],
  ['from the writer thread', true],
])('audit store under SIGKILL, writing %s', (_name, thread) => {
  it('keeps every committed event and a verifiable chain, twice in a row', async () => {
    const db = join(dir, `audit-${thread ? 'thread' : 'main'}.db`);
    const first = await writeUntilKilled(db, thread, 30_000, 10_000);
    let store = AuditStore.open({ path: db });
    expect(store.lastSeq()).toBeGreaterThanOrEqual(first);
    expect(store.verifyChain().ok).toBe(true);
    // the events are the ones written, in order
    const sample = store.query({ afterSeq: first - 5, limit: 5 });
    expect(sample.map((e) => e.details?.['i'])).toEqual([first - 4, first - 3, first - 2, first - 1, first]);
    store.close();

    // the next process continues the same chain after the crash
    const second = await writeUntilKilled(db, thread, first + 20_000);
    store = AuditStore.open({ path: db });
    expect(store.lastSeq()).toBeGreaterThanOrEqual(second);
    const rep = store.verifyChain();
    expect(rep).toMatchObject({ ok: true, firstSeq: 1 });
    expect(rep.checked).toBe(store.lastSeq());
    store.close();
  });
});
