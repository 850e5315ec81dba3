import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { watchFile } from '../../../src/config/index.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const dir = mkdtempSync(join(tmpdir(), 'meshauth-watch-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('watchFile', () => {
  it('runs onChange once per quiet period after writes, renames and re-creation', async () => {
    const file = join(dir, 'a.yaml');
    writeFileSync(file, 'one');
    const clock = new FakeClock();
    let calls = 0;
    const w = watchFile(file, () => calls++, { debounceMs: 100, clock });
    try {
      writeFileSync(file, 'two');
      writeFileSync(`${file}.tmp`, 'three');
      renameSync(`${file}.tmp`, file);
      await expect.poll(() => w.pending, { timeout: 5_000 }).toBe(true);
      clock.advance(99);
      expect(calls).toBe(0);
      clock.advance(1);
      expect(calls).toBe(1);
      expect(w.pending).toBe(false);

      rmSync(file);
      writeFileSync(file, 'four');
      await expect.poll(() => w.pending, { timeout: 5_000 }).toBe(true);
      w.flush();
      expect(calls).toBe(2);
      expect(clock.pending).toBe(0);
    } finally {
      w.close();
    }
  });

  it('ignores other files of the directory, and close() drops a pending change', async () => {
    const file = join(dir, 'b.yaml');
    writeFileSync(file, 'one');
    const clock = new FakeClock();
    let calls = 0;
    const w = watchFile(file, () => calls++, { debounceMs: 100, clock });
    const other = watchFile(join(dir, 'c.yaml'), () => undefined, { clock: new FakeClock() });
    try {
      // Settle point for the unrelated write: a watch on that file saw it.
      writeFileSync(join(dir, 'c.yaml'), 'x');
      await expect.poll(() => other.pending, { timeout: 5_000 }).toBe(true);
      expect(w.pending).toBe(false);
      writeFileSync(file, 'two');
      await expect.poll(() => w.pending, { timeout: 5_000 }).toBe(true);
      w.close();
      w.close();
      expect(clock.pending).toBe(0);
      clock.advance(1_000);
      expect(calls).toBe(0);
    } finally {
      other.close();
    }
  });
});
