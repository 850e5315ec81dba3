import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { AllocatorError } from './errors.js';
import { makeDirsSync } from '../make-dirs.js';

/**
 * Node-local numeric handles for strings (SPIFFE IDs, node names), as the BPF maps key them.
 *
 * - Handles start at 1; 0 is reserved (IDENTITY_UNKNOWN / LOCAL_NODE_ID / POLICY_ANY_REMOTE).
 * - Persisted to a JSON file, rewritten atomically (temporary file, fsync, rename, fsync of the
 *   directory) before `idFor` returns a new handle, so a handle seen by the kernel survives a crash.
 * - Handles are never renumbered: a file that cannot be read back exactly is an error, because the
 *   pinned BPF maps still hold the old numbers.
 * - A released handle is not handed out again while unused ones remain (up to `maxId`): pinned auth
 *   entries for the old holder must never authorize a new one.
 */

const FILE_VERSION = 1;
const U32_MAX = 0xffff_ffff;

export interface IdAllocatorOptions {
  /** JSON file, e.g. <stateDir>/identities.json. Created on first allocation. */
  file: string;
  /** What the keys are ("spiffe-id", "node"); stored in the file and checked on load. */
  namespace: string;
  /** Largest handle; defaults to 2^32-1. */
  maxId?: number;
}

interface FileShape {
  version: number;
  namespace: string;
  /** Next never-used handle. */
  next: number;
  /** Released handles, reused only once `next` passes maxId. */
  released: number[];
  ids: Record<string, number>;
}

export class IdAllocator {
  readonly file: string;
  readonly namespace: string;
  readonly maxId: number;
  private readonly byKey = new Map<string, number>();
  private readonly byId = new Map<number, string>();
  private next = 1;
  private released: number[] = [];

  private constructor(opts: IdAllocatorOptions) {
    this.file = opts.file;
    this.namespace = opts.namespace;
    this.maxId = opts.maxId ?? U32_MAX;
    if (!Number.isInteger(this.maxId) || this.maxId < 1 || this.maxId > U32_MAX) {
      throw new RangeError(`open id allocator: maxId must be 1..${U32_MAX}`);
    }
  }

  /** Loads the file if it exists (throws AllocatorError when it is unreadable or inconsistent). */
  static open(opts: IdAllocatorOptions): IdAllocator {
    const a = new IdAllocator(opts);
    a.load();
    return a;
  }

  /** Handle of `key`, allocating (and persisting) one when it has none. */
  idFor(key: string): number {
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing;
    return this.idsFor([key])[0] as number;
  }

  /** Handles of many keys with one write to disk. */
  idsFor(keys: readonly string[]): number[] {
    let changed = false;
    const out = keys.map((key) => {
      if (typeof key !== 'string' || key === '')
        throw new TypeError('id allocator: key must be a non-empty string');
      const existing = this.byKey.get(key);
      if (existing !== undefined) return existing;
      const id = this.take();
      this.byKey.set(key, id);
      this.byId.set(id, key);
      changed = true;
      return id;
    });
    if (changed) this.persist();
    return out;
  }

  lookup(key: string): number | undefined {
    return this.byKey.get(key);
  }

  keyFor(id: number): string | undefined {
    return this.byId.get(id);
  }

  /** Forgets `key`. Returns its former handle, or undefined when it had none. */
  release(key: string): number | undefined {
    const id = this.byKey.get(key);
    if (id === undefined) return undefined;
    this.byKey.delete(key);
    this.byId.delete(id);
    this.released.push(id);
    this.persist();
    return id;
  }

  /** Releases every key not in `keep`; returns the released [key, id] pairs. */
  retainOnly(keep: Iterable<string>): Array<[string, number]> {
    const wanted = new Set(keep);
    const gone = [...this.byKey].filter(([k]) => !wanted.has(k));
    if (gone.length === 0) return [];
    for (const [k, id] of gone) {
      this.byKey.delete(k);
      this.byId.delete(id);
      this.released.push(id);
    }
    this.persist();
    return gone;
  }

  entries(): Array<[string, number]> {
    return [...this.byKey].sort((a, b) => a[1] - b[1]);
  }

  get size(): number {
    return this.byKey.size;
  }

  private take(): number {
    if (this.next <= this.maxId) return this.next++;
    const reused = this.released.shift();
    if (reused === undefined) {
      throw new AllocatorError(`allocate ${this.namespace} id: all ${this.maxId} handles are in use`);
    }
    return reused;
  }

  private load(): void {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new AllocatorError(`load id allocator ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    const corrupt = (why: string): never => {
      throw new AllocatorError(
        `load id allocator ${this.file}: ${why}; refusing to renumber because pinned BPF maps use these ` +
          'handles (restore the file, or remove it together with the pinned maps)',
      );
    };
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      return corrupt(`not valid JSON (${(err as Error).message})`);
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return corrupt('not a JSON object');
    const d = data as Partial<FileShape>;
    if (d.version !== FILE_VERSION) return corrupt(`unsupported version ${JSON.stringify(d.version)}`);
    if (d.namespace !== this.namespace) {
      return corrupt(`holds "${String(d.namespace)}" handles, expected "${this.namespace}"`);
    }
    const isHandle = (n: unknown): n is number =>
      Number.isInteger(n) && (n as number) >= 1 && (n as number) <= this.maxId;
    if (!Number.isInteger(d.next) || (d.next as number) < 1 || (d.next as number) > this.maxId + 1) {
      return corrupt(`bad "next" ${JSON.stringify(d.next)}`);
    }
    if (typeof d.ids !== 'object' || d.ids === null || Array.isArray(d.ids))
      return corrupt('"ids" is not an object');
    if (!Array.isArray(d.released) || !d.released.every(isHandle)) return corrupt('bad "released" list');
    const next = d.next as number;
    for (const [key, id] of Object.entries(d.ids)) {
      if (key === '') return corrupt('empty key');
      if (!isHandle(id)) return corrupt(`bad handle ${JSON.stringify(id)} for "${key}"`);
      if (id >= next) return corrupt(`handle ${id} of "${key}" is not below "next" (${next})`);
      const other = this.byId.get(id);
      if (other !== undefined) return corrupt(`handle ${id} is held by both "${other}" and "${key}"`);
      this.byKey.set(key, id);
      this.byId.set(id, key);
    }
    for (const id of d.released) {
      if (this.byId.has(id) || id >= next)
        return corrupt(`released handle ${id} is in use or was never allocated`);
    }
    this.next = next;
    this.released = [...new Set(d.released)];
  }

  private persist(): void {
    const data: FileShape = {
      version: FILE_VERSION,
      namespace: this.namespace,
      next: this.next,
      released: this.released,
      ids: Object.fromEntries(this.entries()),
    };
    writeFileAtomic(this.file, `${JSON.stringify(data, null, 2)}\n`);
  }
}

/** The daemon's two allocators: SPIFFE IDs and peer node names, persisted in the state directory. */
export function openStateAllocators(stateDir: string): { identities: IdAllocator; nodes: IdAllocator } {
  return {
    identities: IdAllocator.open({ file: join(stateDir, 'identities.json'), namespace: 'spiffe-id' }),
    nodes: IdAllocator.open({ file: join(stateDir, 'nodes.json'), namespace: 'node' }),
  };
}

/** Write to a temporary file, fsync it, rename over `file`, fsync the directory. */
export function writeFileAtomic(file: string, content: string, mode = 0o600): void {
  const dir = dirname(file);
  makeDirsSync(dir, 0o700);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const fd = openSync(tmp, 'wx', mode);
    try {
      const buf = Buffer.from(content);
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed or never created
    }
    throw new AllocatorError(`write ${file}: ${(err as Error).message}`, { cause: err });
  }
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
