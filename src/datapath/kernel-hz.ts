/**
 * The kernel tick rate (CONFIG_HZ). The sock_ops program answers the kernel's initial SYN timeout
 * question in jiffies, so user space writes HZ into the config map. There is no syscall for it
 * (sysconf(_SC_CLK_TCK) is USER_HZ, always 100), so it is read from the kernel's build config:
 * /boot/config-$(uname -r), else /proc/config.gz (CONFIG_IKCONFIG_PROC), else 250 (the most common
 * distribution setting; with the wrong value the shortened timeout is scaled by realHz / 250).
 */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { gunzipSync } from 'node:zlib';

/** HZ assumed when no kernel config can be read (the kernel-side default as well). */
export const FALLBACK_HZ = 250;

export interface KernelHz {
  hz: number;
  /** File the value came from, or 'fallback'. */
  source: string;
}

/** CONFIG_HZ from the text of a kernel config, or undefined when absent or implausible. */
export function parseConfigHz(configText: string): number | undefined {
  const m = /^CONFIG_HZ=(\d+)\s*$/m.exec(configText);
  if (!m) return undefined;
  const hz = Number(m[1]);
  return hz >= 24 && hz <= 10_000 ? hz : undefined;
}

export interface KernelHzSources {
  /** Kernel release (uname -r). */
  release?: string;
  /** Reads a file; throws when missing. */
  readFile?: (path: string) => Buffer;
}

/** Reads CONFIG_HZ of the running kernel; see the module comment for the order of sources. */
export function detectKernelHz(sources: KernelHzSources = {}): KernelHz {
  const read = sources.readFile ?? ((p: string) => readFileSync(p));
  const candidates: Array<[string, (b: Buffer) => string]> = [
    [`/boot/config-${sources.release ?? release()}`, (b) => b.toString('utf8')],
    ['/proc/config.gz', (b) => gunzipSync(b).toString('utf8')],
  ];
  for (const [path, decode] of candidates) {
    let text: string;
    try {
      text = decode(read(path));
    } catch {
      continue;
    }
    const hz = parseConfigHz(text);
    if (hz !== undefined) return { hz, source: path };
  }
  return { hz: FALLBACK_HZ, source: 'fallback' };
}

let cached: KernelHz | undefined;

/** detectKernelHz() of this machine, computed once. */
export function kernelHz(): KernelHz {
  cached ??= detectKernelHz();
  return cached;
}
