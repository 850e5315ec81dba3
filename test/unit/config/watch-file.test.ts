import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { followFile, watchFile } from '../../../src/config/index.js';
import { configMapVolume } from '../../helpers/configmap-volume.js';
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

  it('a file changed without a quiet time is still read, at most maxWaitMs after the first change', async () => {
    const file = join(dir, 'busy.yaml');
    writeFileSync(file, 'one');
    // Counts the debounce timers armed: one per notification seen (the settle point of each write).
    class CountingClock extends FakeClock {
      armed = 0;
      override setTimeout(fn: () => void, ms: number) {
        this.armed++;
        return super.setTimeout(fn, ms);
      }
    }
    const clock = new CountingClock();
    const t0 = clock.now();
    const calledAt: number[] = [];
    const w = watchFile(file, () => calledAt.push(clock.now()), { debounceMs: 100, maxWaitMs: 500, clock });
    try {
      // A write every 90 ms, each before the 100 ms quiet time is over.
      for (let i = 0; i < 8; i++) {
        const armed = clock.armed;
        writeFileSync(file, `write ${i}`);
        await expect.poll(() => clock.armed, { timeout: 5_000 }).toBeGreaterThan(armed);
        clock.advance(90);
      }
      expect(calledAt.length).toBeGreaterThanOrEqual(1);
      expect(calledAt[0]! - t0).toBeLessThanOrEqual(500);
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

describe('followFile', () => {
  it('applies good content, reports bad content, and follows a ConfigMap symlink swap', async () => {
    const cm = configMapVolume(join(dir, 'cm'), 'value.txt', 'one');
    const clock = new FakeClock();
    const applied: string[] = [];
    const rejected: string[] = [];
    const f = followFile(cm.file, {
      read: (file) => {
        const t = readFileSync(file, 'utf8');
        if (t.startsWith('bad')) throw new Error(`${file}: ${t}`);
        return t;
      },
      apply: (t) => void applied.push(t),
      rejected: (e) => void rejected.push(e.message),
      debounceMs: 50,
      clock,
    });
    try {
      cm.update('two');
      // Settle point: the swap was noticed (debounce pending); then the quiet time passes.
      await expect.poll(() => clock.pending, { timeout: 5_000 }).toBe(1);
      clock.advance(50);
      expect(applied).toEqual(['two']);

      cm.update('bad three');
      await expect.poll(() => clock.pending, { timeout: 5_000 }).toBe(1);
      clock.advance(50);
      expect(rejected).toEqual([`${cm.file}: bad three`]);
      expect(applied).toEqual(['two']);

      // Still watching after a rejected file.
      cm.update('four');
      await expect.poll(() => clock.pending, { timeout: 5_000 }).toBe(1);
      clock.advance(50);
      expect(applied).toEqual(['two', 'four']);
      expect(f.reload()).toEqual({ ok: true });
      expect(applied).toEqual(['two', 'four', 'four']);
    } finally {
      f.close();
      f.close();
    }
    expect(clock.pending).toBe(0);
  });

  it('tells apply whether the attempt before failed and reports every outcome', () => {
    const file = join(dir, 'outcomes.txt');
    writeFileSync(file, 'one');
    const seen: Array<[string, boolean]> = [];
    const outcomes: Array<[string | undefined, boolean]> = [];
    const rejected: string[] = [];
    const f = followFile(file, {
      read: (p) => {
        const t = readFileSync(p, 'utf8');
        if (t.startsWith('bad')) throw new Error(`${p}: ${t}`);
        return t;
      },
      apply(next, { previousFailed }) {
        seen.push([next, previousFailed]);
        if (next === 'refused') throw new Error('refused by apply');
        return next === 'same' ? 'unchanged' : undefined;
      },
      rejected: (e) => rejected.push(e.message),
      observe: (o, failing) => outcomes.push([o, failing]),
      clock: new FakeClock(),
    });
    try {
      writeFileSync(file, 'bad');
      expect(f.reload().ok).toBe(false);
      writeFileSync(file, 'same');
      expect(f.reload()).toEqual({ ok: true });
      writeFileSync(file, 'refused');
      const r = f.reload();
      expect(!r.ok && r.error.message).toBe('refused by apply');
      writeFileSync(file, 'two');
      expect(f.reload()).toEqual({ ok: true });
      expect(f.reload()).toEqual({ ok: true });
      expect(seen).toEqual([
        ['same', true],
        ['refused', false],
        ['two', true],
        ['two', false],
      ]);
      expect(rejected).toEqual([`${file}: bad`, 'refused by apply']);
      expect(outcomes).toEqual([
        ['failed', true],
        ['unchanged', false],
        ['failed', true],
        ['applied', false],
        ['applied', false],
      ]);
    } finally {
      f.close();
    }
  });
});
