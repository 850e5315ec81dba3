/** The BPF filesystem that holds meshauth's pinned maps. */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { BpffsError } from './errors.js';
import { makeDirsSync } from '../make-dirs.js';

export const DEFAULT_BPFFS = '/sys/fs/bpf';

interface MountEntry {
  mountPoint: string;
  fsType: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function mounts(): MountEntry[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(' ');
      const sep = fields.indexOf('-');
      return { mountPoint: unescapeMount(fields[4] ?? ''), fsType: fields[sep + 1] ?? '' };
    });
}

/** File system type of the mount that holds `path` (the longest mount point prefix; last mount wins). */
export function fsTypeOf(path: string): string | undefined {
  const p = resolve(path);
  let best: MountEntry | undefined;
  for (const m of mounts()) {
    const mp = m.mountPoint;
    const inside = p === mp || mp === '/' || p.startsWith(mp.endsWith('/') ? mp : `${mp}/`);
    if (inside && (!best || mp.length >= best.mountPoint.length)) best = m;
  }
  return best?.fsType;
}

/** True when `path` lives on a bpffs mount. */
export function isOnBpffs(path: string): boolean {
  return fsTypeOf(path) === 'bpf';
}

/**
 * Makes `pinDir` usable for pins: mounts bpffs at /sys/fs/bpf when the directory is under it and
 * nothing is mounted there yet, then creates the directory. Throws BpffsError when the directory
 * is not on a bpffs.
 */
export function ensurePinDir(pinDir: string): void {
  const dir = resolve(pinDir);
  if (!isOnBpffs(dir) && (dir === DEFAULT_BPFFS || dir.startsWith(`${DEFAULT_BPFFS}/`))) {
    try {
      execFileSync('mount', ['-t', 'bpf', 'bpf', DEFAULT_BPFFS], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string };
      throw new BpffsError(`mount bpffs at ${DEFAULT_BPFFS}`, (e.stderr?.toString() || e.message).trim());
    }
  }
  if (!isOnBpffs(dir)) {
    throw new BpffsError(`prepare pin dir ${dir}`, 'not on a bpffs mount (mount -t bpf bpf <dir>)');
  }
  makeDirsSync(dir, 0o700);
}

/** Removes the given pins (file names) from pinDir, then the directory when it is empty. */
export function removePinFiles(pinDir: string, names: readonly string[]): void {
  const dir = resolve(pinDir);
  if (!existsSync(dir)) return;
  for (const n of names) rmSync(`${dir}/${n}`, { force: true });
  try {
    if (readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {
    /* not empty or already gone */
  }
}
