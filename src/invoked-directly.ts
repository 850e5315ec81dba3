import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Whether the module at `moduleUrl` (its `import.meta.url`) is the script node was started with
 * (process.argv[1], symbolic links resolved), as with `node dist/src/cli/main.js`; false when it was
 * imported (the bin/ launchers, tests), and when either path cannot be resolved.
 */
export function invokedDirectly(moduleUrl: string): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  try {
    return realpathSync(arg) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
