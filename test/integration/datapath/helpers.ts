import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Datapath, ensurePinDir, type DatapathSettings } from '../../../src/datapath/index.js';

export const OBJECT_PATH = fileURLToPath(new URL('../../../bpf/meshauth.bpf.o', import.meta.url));
export const EMPTY_OBJECT_PATH = fileURLToPath(new URL('../../../bpf/bench_empty.bpf.o', import.meta.url));

/** A fresh pin directory name under /sys/fs/bpf (bpffs mounted when missing). */
export function randomPinDir(): string {
  const dir = `/sys/fs/bpf/meshauth-test-${randomBytes(4).toString('hex')}`;
  ensurePinDir(dir);
  return dir;
}

export function openDatapath(pinDir: string, settings?: DatapathSettings): Datapath {
  return Datapath.open({ objectPath: OBJECT_PATH, pinDir, ...(settings ? { settings } : {}) });
}

export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}
