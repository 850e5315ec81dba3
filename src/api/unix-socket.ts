import { chmodSync, chownSync, lstatSync, readFileSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { ApiServerError } from './errors.js';
import { makeDirsSync } from '../make-dirs.js';

/** True when something accepts connections on the Unix socket at path. */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Make path free for a new listener: create its directory, and remove a leftover socket only when it
 * is a socket and nobody answers on it. Refuses to touch a regular file or a live socket.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  makeDirsSync(dirname(path), 0o755);
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ApiServerError(`api: listen on ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isSocket()) {
    throw new ApiServerError(`api: listen on ${path}: path exists and is not a socket; not removing it`);
  }
  if (await socketAlive(path)) {
    throw new ApiServerError(`api: listen on ${path}: another process is serving on this socket`);
  }
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ApiServerError(`api: remove stale socket ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Numeric gid of a group given by name or number. */
export function resolveGroup(group: string | number): number {
  if (typeof group === 'number') return group;
  if (/^\d+$/.test(group)) return Number(group);
  const line = readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[0] === group);
  if (!line) throw new ApiServerError(`api: socket group: no group named "${group}"`);
  return Number(line.split(':')[2]);
}

/** Apply mode (and group) to the socket file. */
export function restrictSocket(path: string, mode: number, group?: string | number): void {
  try {
    if (group !== undefined) chownSync(path, -1, resolveGroup(group));
    chmodSync(path, mode);
  } catch (err) {
    if (err instanceof ApiServerError) throw err;
    throw new ApiServerError(`api: set permissions on ${path}: ${(err as Error).message}`, { cause: err });
  }
}
