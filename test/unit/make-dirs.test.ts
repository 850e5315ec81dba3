import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDirs, makeDirsSync } from '../../src/make-dirs.js';

const base = mkdtempSync(join(tmpdir(), 'meshauth-make-dirs-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

describe.each([
  ['makeDirsSync', async (p: string, mode?: number) => makeDirsSync(p, mode)],
  ['makeDirs', makeDirs],
] as const)('%s', (name, make) => {
  it('makes missing levels with the mode and accepts existing directories', async () => {
    const deep = join(base, name, 'a', 'b', 'c');
    await make(deep, 0o700);
    for (const p of [join(base, name), join(base, name, 'a'), deep]) {
      expect(statSync(p).isDirectory()).toBe(true);
      expect(statSync(p).mode & 0o777).toBe(0o700);
    }
    await make(deep, 0o755); // already there: nothing to do, mode unchanged
    expect(statSync(deep).mode & 0o777).toBe(0o700);
    await make(base);
  });

  it('refuses a level that is a file (ENOTDIR, naming it)', async () => {
    const file = join(base, `${name}-file`);
    writeFileSync(file, 'x');
    for (const p of [file, join(file, 'sub')]) {
      const err = (await Promise.resolve(make(p)).catch((e: unknown) => e)) as NodeJS.ErrnoException;
      expect(err.code).toBe('ENOTDIR');
    }
  });

  it('regression: a parent that refuses new entries with ENOENT fails at once (Node recursive mkdir loops for ever)', async () => {
    const err = (await Promise.resolve(make('/proc/1/meshauth-x/y')).catch(
      (e: unknown) => e,
    )) as NodeJS.ErrnoException;
    expect(err.code).toBe('ENOENT');
    expect(err.path).toBe('/proc/1/meshauth-x');
  });
});
