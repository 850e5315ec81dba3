/**
 * The fuzz harness: fast-check properties run for a fixed wall-clock budget per target instead of a
 * fixed number of runs, with seed corpora from test/fuzz/corpus/<target>/ and byte-level and
 * DER-aware mutators of those seeds.
 *
 * Budget per target: the target's CI seconds, or MESHAUTH_FUZZ_SECONDS for every target (longer
 * runs on demand). MESHAUTH_FUZZ_SEED replays one run; a failure prints the seed and the path of
 * the shrunk counterexample (fast-check's report). MESHAUTH_FUZZ_REPORT names a file that gets one
 * JSON line per target (target, executions, seconds, seed, heap): RELIABILITY.md's numbers come from it.
 *
 * Bounded memory: every target samples the V8 heap after a full collection (about 20 samples over
 * its budget, at most 2 per second) and fails when the heap after the run exceeds the heap after
 * the first sample (warm: modules loaded, code compiled) by more than HEAP_BOUND_MIB; the report
 * carries both and the least-squares slope, so a long run shows a slow leak a short one hides.
 */
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { expect } from 'vitest';
import { MeshauthError } from '../../src/errors.js';

export { fc };

export const CORPUS_DIR = fileURLToPath(new URL('./corpus/', import.meta.url));

/** Wall-clock budget of one target, ms. */
export function budgetMs(ciSeconds: number): number {
  const env = process.env['MESHAUTH_FUZZ_SECONDS'];
  const s = env !== undefined && env !== '' ? Number(env) : ciSeconds;
  if (!Number.isFinite(s) || s <= 0)
    throw new Error(`MESHAUTH_FUZZ_SECONDS must be a positive number, got ${env}`);
  return Math.round(s * 1000);
}

/** vitest timeout for a target: its budget plus room for set-up, shrinking and teardown. */
export function timeoutFor(ciSeconds: number, setupMs = 30_000): number {
  return budgetMs(ciSeconds) * 2 + setupMs;
}

function seed(): number {
  const env = process.env['MESHAUTH_FUZZ_SEED'];
  if (env !== undefined && env !== '') return Number(env);
  return (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
}

/** Heap growth a target may show over its run (after full collections), MiB. */
export const HEAP_BOUND_MIB = 32;

// A full collection on demand without --expose-gc on the command line (vitest starts the workers):
// the flag is set at run time and a fresh context picks up the `gc` global it creates.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

/** Heap samples after full collections, taken at most every `intervalMs` from `tick()`. */
export class HeapWatch {
  private readonly started = performance.now();
  private next: number;
  readonly samples: Array<{ s: number; mib: number }> = [];

  constructor(private readonly intervalMs: number) {
    this.next = this.started;
  }

  /** Takes a sample when one is due; cheap otherwise. */
  tick(): void {
    const now = performance.now();
    if (now < this.next) return;
    this.sample();
    this.next = performance.now() + this.intervalMs;
  }

  sample(): void {
    collect();
    this.samples.push({
      s: (performance.now() - this.started) / 1000,
      mib: process.memoryUsage().heapUsed / 2 ** 20,
    });
  }

  /** Warm and final heap (MiB), the slope over the samples after the first (KiB per minute). */
  summary(): { warmMiB: number; endMiB: number; kibPerMin: number } {
    this.sample();
    const warm = this.samples.slice(1);
    const round = (x: number) => Number(x.toFixed(1));
    return {
      warmMiB: round(warm[0]!.mib),
      endMiB: round(warm[warm.length - 1]!.mib),
      kibPerMin: round(
        slope(
          warm.map((x) => x.s / 60),
          warm.map((x) => x.mib * 1024),
        ),
      ),
    };
  }
}

function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function heapWatch(ciSeconds: number): HeapWatch {
  return new HeapWatch(Math.max(500, budgetMs(ciSeconds) / 20));
}

export interface FuzzReport {
  target: string;
  executions: number;
  seconds: number;
  seed: number;
  heap: { warmMiB: number; endMiB: number; kibPerMin: number };
}

function finish(r: FuzzReport, minExecutions: number, ciSeconds: number): FuzzReport {
  report(r);
  expect(r.executions).toBeGreaterThanOrEqual(minimumFor(minExecutions, ciSeconds));
  expect(r.heap.endMiB - r.heap.warmMiB, `${r.target}: heap growth (MiB) over the run`).toBeLessThan(
    HEAP_BOUND_MIB,
  );
  return r;
}

function report(r: FuzzReport): void {
  console.log(
    `[fuzz] ${r.target}: ${r.executions} executions in ${r.seconds.toFixed(1)} s (seed ${r.seed}), ` +
      `heap ${r.heap.warmMiB} → ${r.heap.endMiB} MiB (${r.heap.kibPerMin} KiB/min)`,
  );
  const file = process.env['MESHAUTH_FUZZ_REPORT'];
  if (file) appendFileSync(file, JSON.stringify(r) + '\n');
}

const RUNS = 2 ** 31 - 1;

/**
 * Run `check` on generated inputs until the target's budget is spent; fails (with the shrunk input
 * and the seed) on the first input whose check throws. At least `minExecutions` inputs must run,
 * so a target whose generator or set-up is broken cannot pass by doing nothing.
 */
export function fuzzSync<T>(
  target: string,
  ciSeconds: number,
  arb: fc.Arbitrary<T>,
  check: (input: T) => void,
  minExecutions = 50,
): FuzzReport {
  let executions = 0;
  const s = seed();
  const heap = heapWatch(ciSeconds);
  const started = performance.now();
  fc.assert(
    fc.property(arb, (v) => {
      executions++;
      heap.tick();
      check(v);
    }),
    { numRuns: RUNS, interruptAfterTimeLimit: budgetMs(ciSeconds), markInterruptAsFailure: false, seed: s },
  );
  const seconds = (performance.now() - started) / 1000;
  return finish({ target, executions, seconds, seed: s, heap: heap.summary() }, minExecutions, ciSeconds);
}

/** The minimum scaled down for a budget shorter than the CI one (never below one execution). */
function minimumFor(minExecutions: number, ciSeconds: number): number {
  return Math.max(1, Math.floor(minExecutions * Math.min(1, budgetMs(ciSeconds) / (ciSeconds * 1000))));
}

/** fuzzSync for checks that await (sockets, servers, kernel calls on a worker). */
export async function fuzzAsync<T>(
  target: string,
  ciSeconds: number,
  arb: fc.Arbitrary<T>,
  check: (input: T) => Promise<void>,
  minExecutions = 20,
): Promise<FuzzReport> {
  let executions = 0;
  const s = seed();
  const heap = heapWatch(ciSeconds);
  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(arb, async (v) => {
      executions++;
      heap.tick();
      await check(v);
    }),
    { numRuns: RUNS, interruptAfterTimeLimit: budgetMs(ciSeconds), markInterruptAsFailure: false, seed: s },
  );
  const seconds = (performance.now() - started) / 1000;
  return finish({ target, executions, seconds, seed: s, heap: heap.summary() }, minExecutions, ciSeconds);
}

export interface CorpusFile {
  name: string;
  data: Buffer;
}

/** The seed corpus of a target (test/fuzz/corpus/<target>/*), sorted by name. */
export function corpus(target: string): CorpusFile[] {
  const dir = join(CORPUS_DIR, target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => !n.startsWith('.'))
    .sort()
    .map((name) => ({ name, data: readFileSync(join(dir, name)) }));
}

/** Seeds of a target, failing when the corpus is missing (a renamed directory must not go unnoticed). */
export function seeds(target: string): Buffer[] {
  const files = corpus(target);
  if (files.length === 0) throw new Error(`fuzz corpus ${target} is empty`);
  return files.map((f) => f.data);
}

/**
 * Assert that `fn` either returns or throws a MeshauthError whose code is one of `codes`: a
 * TypeError, RangeError or any other untyped error is a finding.
 */
export function typedOnly<R>(
  codes: readonly string[],
  fn: () => R,
): { ok: true; value: R } | { ok: false; error: MeshauthError } {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    assertTyped(err, codes);
    return { ok: false, error: err as MeshauthError };
  }
}

export function assertTyped(err: unknown, codes: readonly string[]): void {
  if (!(err instanceof MeshauthError)) {
    throw new Error(`untyped error: ${(err as Error)?.stack ?? String(err)}`, { cause: err });
  }
  if (!codes.includes(err.code))
    throw new Error(`unexpected error code ${err.code}: ${err.message}`, { cause: err });
}

// ---------------------------------------------------------------------------------------------
// Mutators

const INTERESTING_BYTES = [
  0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff, 0x30, 0x31, 0x04, 0x05, 0x06, 0xa0, 0xa3,
];

export type ByteOp =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; len: number }
  | { op: 'duplicate'; at: number; len: number };

const at = fc.nat({ max: 1 << 20 });
export const byteOp: fc.Arbitrary<ByteOp> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant('flip' as const), at, bit: fc.integer({ min: 0, max: 7 }) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      at,
      value: fc.oneof(fc.constantFrom(...INTERESTING_BYTES), fc.integer({ min: 0, max: 255 })),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), at }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('insert' as const),
      at,
      bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('delete' as const), at, len: fc.integer({ min: 1, max: 64 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('duplicate' as const), at, len: fc.integer({ min: 1, max: 64 }) }),
  },
);

/** Apply byte operations; positions wrap around the current length. */
export function applyOps(input: Buffer, ops: readonly ByteOp[]): Buffer {
  let b = Buffer.from(input);
  for (const o of ops) {
    const n = b.length;
    const pos = n === 0 ? 0 : o.at % n;
    switch (o.op) {
      case 'flip':
        if (n > 0) b[pos] = b[pos]! ^ (1 << o.bit);
        break;
      case 'set':
        if (n > 0) b[pos] = o.value;
        break;
      case 'truncate':
        b = b.subarray(0, pos);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, pos), Buffer.from(o.bytes), b.subarray(pos)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + o.len)]);
        break;
      case 'duplicate':
        b = Buffer.concat([
          b.subarray(0, pos + o.len),
          b.subarray(pos, pos + o.len),
          b.subarray(pos + o.len),
        ]);
        break;
    }
  }
  return b;
}

/** A seed with 1..maxOps byte operations applied. */
export function mutatedBytes(seedList: readonly Buffer[], maxOps = 6): fc.Arbitrary<Buffer> {
  return fc
    .tuple(fc.constantFrom(...seedList), fc.array(byteOp, { minLength: 1, maxLength: maxOps }))
    .map(([s, ops]) => applyOps(s, ops));
}

/**
 * Offsets of every DER TLV header in `der` (depth-first), walking constructed values. An
 * independent walker (not the parser under test) so that mutations land on tags and lengths.
 */
export function tlvHeaders(der: Uint8Array): Array<{ offset: number; headerLen: number; len: number }> {
  const out: Array<{ offset: number; headerLen: number; len: number }> = [];
  const walk = (start: number, end: number, depth: number): void => {
    let p = start;
    while (p + 2 <= end && depth < 32) {
      const tag = der[p]!;
      let len = der[p + 1]!;
      let hl = 2;
      if (len & 0x80) {
        const k = len & 0x7f;
        if (k === 0 || k > 4 || p + 2 + k > end) return;
        len = 0;
        for (let i = 0; i < k; i++) len = len * 256 + der[p + 2 + i]!;
        hl = 2 + k;
      }
      if (p + hl + len > end) return;
      out.push({ offset: p, headerLen: hl, len });
      // constructed, or a BIT/OCTET STRING that wraps DER (extension values, keys)
      if (tag & 0x20) walk(p + hl, p + hl + len, depth + 1);
      else if (tag === 0x04 && len > 2 && der[p + hl] === 0x30) walk(p + hl, p + hl + len, depth + 1);
      p += hl + len;
    }
  };
  walk(0, der.length, 0);
  return out;
}

export type DerOp =
  | { op: 'tag'; node: number; value: number }
  | { op: 'length'; node: number; delta: number }
  | { op: 'long-form'; node: number }
  | { op: 'drop-node'; node: number }
  | { op: 'dup-node'; node: number }
  | { op: 'content'; node: number; bytes: ByteOp[] };

export const derOp: fc.Arbitrary<DerOp> = fc.oneof(
  fc.record({
    op: fc.constant('tag' as const),
    node: fc.nat(),
    value: fc.constantFrom(
      0x00,
      0x01,
      0x02,
      0x03,
      0x04,
      0x05,
      0x06,
      0x0c,
      0x13,
      0x16,
      0x17,
      0x18,
      0x30,
      0x31,
      0x80,
      0x81,
      0x82,
      0x86,
      0xa0,
      0xa3,
      0x1f,
    ),
  }),
  fc.record({ op: fc.constant('length' as const), node: fc.nat(), delta: fc.integer({ min: -3, max: 3 }) }),
  fc.record({ op: fc.constant('long-form' as const), node: fc.nat() }),
  fc.record({ op: fc.constant('drop-node' as const), node: fc.nat() }),
  fc.record({ op: fc.constant('dup-node' as const), node: fc.nat() }),
  fc.record({
    op: fc.constant('content' as const),
    node: fc.nat(),
    bytes: fc.array(byteOp, { minLength: 1, maxLength: 3 }),
  }),
);

/** Apply one structure-aware operation to a DER value (lengths of enclosing nodes are not fixed up). */
export function applyDerOp(der: Buffer, o: DerOp): Buffer {
  const nodes = tlvHeaders(der);
  if (nodes.length === 0) return der;
  const n = nodes[o.node % nodes.length]!;
  const end = n.offset + n.headerLen + n.len;
  switch (o.op) {
    case 'tag': {
      const b = Buffer.from(der);
      b[n.offset] = o.value;
      return b;
    }
    case 'length': {
      const b = Buffer.from(der);
      const lenAt = n.headerLen === 2 ? n.offset + 1 : n.offset + n.headerLen - 1;
      b[lenAt] = (b[lenAt]! + o.delta) & 0xff;
      return b;
    }
    case 'long-form': {
      // Non-minimal length encoding (BER, not DER): 0x82 hh ll.
      const hdr = Buffer.from([der[n.offset]!, 0x82, (n.len >> 8) & 0xff, n.len & 0xff]);
      return Buffer.concat([der.subarray(0, n.offset), hdr, der.subarray(n.offset + n.headerLen)]);
    }
    case 'drop-node':
      return Buffer.concat([der.subarray(0, n.offset), der.subarray(end)]);
    case 'dup-node':
      return Buffer.concat([der.subarray(0, end), der.subarray(n.offset, end), der.subarray(end)]);
    case 'content': {
      const content = applyOps(der.subarray(n.offset + n.headerLen, end), o.bytes);
      return Buffer.concat([der.subarray(0, n.offset + n.headerLen), content, der.subarray(end)]);
    }
  }
}

/** A seed DER value with 1..maxOps DER-aware operations applied. */
export function mutatedDer(seedList: readonly Buffer[], maxOps = 3): fc.Arbitrary<Buffer> {
  return fc
    .tuple(fc.constantFrom(...seedList), fc.array(derOp, { minLength: 1, maxLength: maxOps }))
    .map(([s, ops]) => ops.reduce(applyDerOp, s));
}

// ---------------------------------------------------------------------------------------------
// Structural mutation of parsed documents (YAML, JSON, Kubernetes objects)

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path into a JSON-like value (objects and arrays included). */
export function paths(v: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  const out: Array<Array<string | number>> = [prefix];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...prefix, i])));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  return out;
}

export const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    null,
    true,
    0,
    -1,
    1.5,
    2 ** 31,
    2 ** 53 + 2,
    1e308,
    -0,
    '',
    ' ',
    '0',
    'NaN',
    '1e9',
    '-1s',
    '1h',
    '999999h',
  ),
  fc.constantFrom(
    '10.0.0.1/33',
    '::1',
    'fd00::/129',
    '256.0.0.1',
    'spiffe://demo.local',
    'spiffe://x/y/../z',
    '*',
    '**',
  ),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.integer(),
  fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 2 }),
);

export type DocOp =
  { op: 'set'; at: number; value: unknown } | { op: 'drop'; at: number } | { op: 'dup'; at: number };
export const docOp: fc.Arbitrary<DocOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: oddValue }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('drop' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('dup' as const), at: fc.nat() }) },
);

export function applyDocOp(doc: unknown, o: DocOp): unknown {
  const copy = structuredClone(doc);
  const all = paths(copy).filter((p) => p.length > 0);
  if (all.length === 0) return copy;
  const p = all[o.at % all.length]!;
  let parent = copy as Record<string | number, unknown>;
  for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = p[p.length - 1]!;
  if (o.op === 'set') parent[last] = o.value;
  else if (o.op === 'drop') {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else if (Array.isArray(parent)) parent.push(structuredClone(parent[last as number]));
  else parent[`${String(last)}x`] = structuredClone(parent[last]);
  return copy;
}
