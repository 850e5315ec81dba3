import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..', '..');
export const CLI_JS = join(ROOT, 'dist', 'src', 'cli', 'main.js');
export const AUDIT_JS = join(ROOT, 'dist', 'src', 'audit', 'index.js');

let built = false;

/**
 * Compile the CLI, audit and API modules and the bench scripts (and what they import) to dist/ so tests can spawn plain
 * `node` on them. Type errors elsewhere do not stop the emit; a missing output does.
 */
export function buildDist(): void {
  if (built) return;
  try {
    execFileSync('npx', ['tsc', '-p', join(import.meta.dirname, 'tsconfig.dist.json')], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch (err) {
    // tsc exits non-zero on type errors but still emits; only missing output is fatal
    if (!existsSync(CLI_JS) || !existsSync(AUDIT_JS)) {
      const out = (err as { stdout?: Buffer }).stdout?.toString() ?? String(err);
      throw new Error(`build dist for CLI tests failed (run: npx tsc -p tsconfig.build.json):\n${out}`, {
        cause: err,
      });
    }
  }
  if (!existsSync(CLI_JS) || !existsSync(AUDIT_JS)) {
    throw new Error(`build dist for CLI tests: ${CLI_JS} missing (run: npx tsc -p tsconfig.build.json)`);
  }
  built = true;
}
