import { readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { WireguardError } from './errors.js';
import { runChecked, type Exec } from './exec.js';

/** Where wireguard-go and wg put and look for the UAPI sockets (fixed at build time in both). */
export const DEFAULT_SOCKET_DIR = '/var/run/wireguard';

export function uapiSocketPath(socketDir: string, ifname: string): string {
  return join(socketDir, `${ifname}.sock`);
}

/** 'live' when something accepts connections on the socket, 'stale' when the file is left over. */
export async function probeSocket(path: string, timeoutMs = 1000): Promise<'live' | 'stale' | 'absent'> {
  try {
    if (!statSync(path).isSocket()) return 'stale';
  } catch {
    return 'absent';
  }
  return new Promise((resolve) => {
    const sock = connect(path);
    const t = setTimeout(() => finish('stale'), timeoutMs);
    function finish(state: 'live' | 'stale'): void {
      clearTimeout(t);
      sock.destroy();
      resolve(state);
    }
    sock.once('connect', () => finish('live'));
    sock.once('error', () => finish('stale'));
  });
}

export function removeSocket(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Starts wireguard-go for `ifname`. It daemonizes: the command returns once the interface and its
 * UAPI socket exist, and the daemon keeps running when meshauthd exits. LOG_LEVEL is cleared so
 * the daemon does not inherit (and hold open) our output pipes.
 */
export async function startWireguardGo(exec: Exec, binary: string, ifname: string): Promise<void> {
  try {
    await runChecked(exec, `start ${binary} for ${ifname}`, 'env', [
      '-u',
      'LOG_LEVEL',
      '-u',
      'WG_PROCESS_FOREGROUND',
      binary,
      ifname,
    ]);
  } catch (err) {
    const e = err as WireguardError;
    throw new WireguardError('MESHAUTH_ERR_WIREGUARD_USERSPACE_START', e.message, {
      command: e.command ?? [binary, ifname],
      ...(e.output === undefined ? {} : { output: e.output }),
      exitCode: e.exitCode,
      cause: err,
    });
  }
}

/** Inode of a network namespace: the named one (`ip netns`), or this process's own. */
export function netnsInode(netns?: string): number {
  return statSync(netns === undefined ? '/proc/self/ns/net' : join('/var/run/netns', netns)).ino;
}

/**
 * The pid of the wireguard-go daemon serving `ifname` in the namespace with inode `nsInode`
 * (found through /proc: command name, argument and network namespace), or undefined.
 */
export function findWireguardGoPid(
  ifname: string,
  nsInode: number,
  binaryName = 'wireguard-go',
): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (comm !== binaryName.slice(0, 15)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // zombies (state Z) have exited already
      if (/\) Z /.test(stat)) continue;
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (argv[argv.length - 1] !== ifname) continue;
      if (statSync(`/proc/${entry}/ns/net`).ino !== nsInode) continue;
      return Number(entry);
    } catch {
      // the process went away while we looked
    }
  }
  return undefined;
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // after "pid (comm) ": state is field 3 (index 0 here); utime = field 14, stime = field 15
  const ticks = Number(fields[11]) + Number(fields[12]);
  // USER_HZ is 100 on every Linux architecture meshauth supports
  return ticks / 100;
}
