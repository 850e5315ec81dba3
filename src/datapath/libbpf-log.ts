/**
 * Captures libbpf's diagnostic output (libbpf_set_print) so that load failures can carry the
 * verifier log. Debug-level lines are dropped; warnings and info lines go to the active capture,
 * or nowhere when no capture is running.
 */
import { c, lib, registerCallback } from './libbpf.js';

const LIBBPF_DEBUG = 2;
let installed = false;
let capture: string[] | undefined;
const scratch = Buffer.alloc(16 * 1024);

function install(): void {
  if (installed) return;
  const { vsnprintf } = c();
  const cb = registerCallback(
    ((level: number, fmt: unknown, ap: unknown): number => {
      if (level >= LIBBPF_DEBUG || !capture) return 0;
      const n = vsnprintf(scratch, scratch.length, fmt, ap);
      if (n > 0) capture.push(scratch.subarray(0, Math.min(n, scratch.length - 1)).toString('utf8'));
      return 0;
    }) as (...args: never[]) => unknown,
    lib().printCallbackType,
  );
  lib().libbpf_set_print(cb);
  installed = true;
}

/** Runs fn (synchronous libbpf calls) and returns its result with what libbpf printed meanwhile. */
export function withLibbpfLog<T>(fn: () => T): { result: T; log: string } {
  install();
  const prev = capture;
  const lines: string[] = [];
  capture = lines;
  try {
    const result = fn();
    return { result, log: lines.join('') };
  } finally {
    capture = prev;
  }
}
