import { mkdirSync, statSync, type Stats } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * A directory and its missing parents, like `mkdir -p`, made one level at a time.
 *
 * Node's own `mkdir(path, { recursive: true })` never returns when a parent exists but refuses new
 * entries with ENOENT (any path under /proc/<pid>, e.g. a mistyped `stateDir: /proc/1/meshauth`):
 * it retries the parent, finds it there, and tries the child again, for ever, so the daemon or
 * CLI hung at start instead of saying what is wrong. Here the deepest existing level is found
 * (it must be a directory) and each missing level below it is made once; the first one that
 * cannot be made throws.
 *
 * `mode` applies to every directory made (not to existing ones). Throws the fs error of the level
 * that failed (its `path` names that level; ENOENT, EACCES, EROFS, ...), or an ENOTDIR error when
 * a level exists and is not a directory, so fileErrorReason can describe it.
 */
export function makeDirsSync(path: string, mode = 0o777): void {
  const all = levels(path);
  let i = all.length;
  for (; i > 0; i--) {
    const st = statOrUndefined(() => statSync(all[i - 1]!));
    if (!st) continue;
    if (!st.isDirectory()) throw notDirectory(all[i - 1]!);
    break;
  }
  for (; i < all.length; i++) {
    try {
      mkdirSync(all[i]!, { mode });
    } catch (err) {
      // made meanwhile by someone else: fine if it is a directory
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (!statSync(all[i]!).isDirectory()) throw notDirectory(all[i]!);
    }
  }
}

/** makeDirsSync without blocking the event loop. */
export async function makeDirs(path: string, mode = 0o777): Promise<void> {
  const all = levels(path);
  let i = all.length;
  for (; i > 0; i--) {
    let st: Stats | undefined;
    try {
      st = await stat(all[i - 1]!);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (!st) continue;
    if (!st.isDirectory()) throw notDirectory(all[i - 1]!);
    break;
  }
  for (; i < all.length; i++) {
    try {
      await mkdir(all[i]!, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (!(await stat(all[i]!)).isDirectory()) throw notDirectory(all[i]!);
    }
  }
}

function statOrUndefined(fn: () => Stats): Stats | undefined {
  try {
    return fn();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return undefined;
  }
}

/** The absolute path and its parents, outermost first, without the root. */
function levels(path: string): string[] {
  const out: string[] = [];
  for (let p = resolve(path); dirname(p) !== p; p = dirname(p)) out.unshift(p);
  return out;
}

function notDirectory(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${path}'`), {
    code: 'ENOTDIR',
    syscall: 'mkdir',
    path,
  });
}
