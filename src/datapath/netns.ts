/** Runs synchronous work inside another network namespace (this thread only), then switches back. */
import { existsSync } from 'node:fs';
import { DatapathError, DatapathInputError } from './errors.js';
import { c, lastErrno } from './libbpf.js';

const CLONE_NEWNET = 0x40000000;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

/** "/var/run/netns/<name>" for a bare name; a path is used as is. */
export function netnsPath(netns: string): string {
  return netns.includes('/') ? netns : `/var/run/netns/${netns}`;
}

/**
 * Calls fn with the calling thread switched into `netns` (a name from `ip netns` or a path). fn must
 * be synchronous: only the main thread moves, and it moves back before this returns.
 */
export function withNetns<T>(netns: string | undefined, fn: () => T): T {
  if (netns === undefined) return fn();
  const path = netnsPath(netns);
  if (!existsSync(path)) throw new DatapathInputError(`enter netns ${netns}`, 'no such network namespace');
  const libc = c();
  const self = libc.open('/proc/thread-self/ns/net', O_RDONLY | O_CLOEXEC);
  if (self < 0) throw new DatapathError('open own netns', lastErrno());
  const target = libc.open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    const errno = lastErrno();
    libc.close(self);
    throw new DatapathError(`open netns ${netns}`, errno);
  }
  try {
    if (libc.setns(target, CLONE_NEWNET) < 0) throw new DatapathError(`enter netns ${netns}`, lastErrno());
    let result: { ok: true; value: ReturnType<typeof fn> } | { ok: false; error: unknown };
    try {
      result = { ok: true, value: fn() };
    } catch (error) {
      result = { ok: false, error };
    }
    if (libc.setns(self, CLONE_NEWNET) < 0) {
      // Staying in the wrong namespace would silently misroute everything that follows.
      throw new DatapathError(`return from netns ${netns}`, lastErrno(), undefined, undefined, {
        cause: result.ok ? undefined : result.error,
      });
    }
    if (!result.ok) throw result.error;
    return result.value;
  } finally {
    libc.close(target);
    libc.close(self);
  }
}
