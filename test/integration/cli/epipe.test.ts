import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildDist, ROOT } from './build-dist.js';

const BIN = join(ROOT, 'bin', 'meshauth.js');

beforeAll(() => buildDist());

/** Run the CLI with a stdout whose reader has gone away before the CLI writes anything. */
function withClosedStdout(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout.destroy();
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (status) => resolve({ status, stderr }));
  });
}

describe('CLI writing into a closed pipe', () => {
  it('meshauth --help exits quietly with status 0', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await withClosedStdout(['--help']);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    }
  });

  it('keeps the verdict of svid verify as its exit status', async () => {
    const dir = join(ROOT, 'test', 'fixtures', 'critical-extension');
    const bad = await withClosedStdout([
      'svid',
      'verify',
      '--bundle',
      join(dir, 'ca.pem'),
      join(dir, 'leaf.pem'),
    ]);
    expect(bad.stderr).toBe('');
    expect(bad.status).toBe(1);
    const good = await withClosedStdout([
      'svid',
      'verify',
      '--bundle',
      join(dir, 'ca.pem'),
      join(dir, 'control.pem'),
    ]);
    expect(good.stderr).toBe('');
    expect(good.status).toBe(0);
  });
});
