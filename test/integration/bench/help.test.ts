import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildDist, ROOT } from '../cli/build-dist.js';

/** Every bench script as a person runs it: node dist/bench/<name>.js. */
const SCRIPTS = readdirSync(join(ROOT, 'bench'))
  .filter((f) => f.endsWith('.ts') && f !== 'args.ts')
  .map((f) => f.slice(0, -3));

function node(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, MESHAUTH_BENCH_SMOKE: '1' },
    });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('bench scripts (spawned, built dist)', () => {
  beforeAll(() => buildDist(), 180_000);

  it('finds the scripts', () => {
    expect(SCRIPTS).toEqual(expect.arrayContaining(['main', 'audit', 'datapath', 'handshake', 'relay']));
  });

  it.each(SCRIPTS)('%s: --help lists its flags and exits 0 without running', async (name) => {
    const r = await node([join('dist', 'bench', `${name}.js`), '--help']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^usage: node dist/bench/${name}\\.js \\[options\\]`));
    expect(r.stdout).toMatch(/\nOptions:\n(?: {2}--?\S.*\n)*? {2}-h, --help {2,}show this help\n/);
  });

  it.each(SCRIPTS)('%s: an unknown flag is one line on stderr and exit 2, no stack trace', async (name) => {
    const r = await node([join('dist', 'bench', `${name}.js`), '--no-such-flag']);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `bench ${name}: unknown option '--no-such-flag' (run node dist/bench/${name}.js --help for usage)\n`,
    );
  });
});
