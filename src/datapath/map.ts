/**
 * A typed handle on one BPF map: the fd plus fixed facts (type, key size, value size, max entries)
 * and the codecs of its key and value. Sizes are checked on every call.
 */
import { constants } from 'node:os';
import { readFileSync } from 'node:fs';
import { ClosedError } from '../errors.js';
import { DatapathError, KeyNotExistError, SizeMismatchError } from './errors.js';
import { lib } from './libbpf.js';
import { MapType, type Codec } from './wire.js';

/** bpf_map_update_elem flags. */
export const UpdateFlags = { Any: 0n, NoExist: 1n, Exist: 2n } as const;

export interface MapInfo {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

let possibleCpus: number | undefined;

/** Number of possible CPUs (the per-CPU value count of per-CPU maps). */
export function numPossibleCpus(): number {
  if (possibleCpus !== undefined) return possibleCpus;
  const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  let n = 0;
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    n += b === undefined ? 1 : b - a + 1;
  }
  possibleCpus = n;
  return n;
}

function isPerCpu(type: number): boolean {
  return type === MapType.PercpuArray || type === 5 /* PERCPU_HASH */ || type === 10; /* LRU_PERCPU_HASH */
}

export class BpfMap<K, V> {
  readonly info: MapInfo;
  /** Bytes of a value buffer as user space sees it (per-CPU maps: 8-aligned value size × CPUs). */
  readonly valueBytes: number;
  private closed = false;

  constructor(
    info: MapInfo,
    private readonly mapFd: number,
    private readonly keyCodec: Codec<K>,
    private readonly valueCodec: Codec<V>,
    private readonly onClose?: () => void,
  ) {
    this.info = info;
    this.valueBytes = isPerCpu(info.type)
      ? Math.ceil(info.valueSize / 8) * 8 * numPossibleCpus()
      : info.valueSize;
    if (keyCodec.size !== info.keySize)
      throw new SizeMismatchError(`open map ${info.name}`, 'key codec', info.keySize, keyCodec.size);
    if (valueCodec.size !== this.valueBytes) {
      throw new SizeMismatchError(`open map ${info.name}`, 'value codec', this.valueBytes, valueCodec.size);
    }
  }

  get name(): string {
    return this.info.name;
  }

  /** The map's file descriptor (owned by the map's object; do not close it). */
  get fd(): number {
    this.check('fd');
    return this.mapFd;
  }

  private check(op: string): void {
    if (this.closed) throw new ClosedError(`${op} ${this.info.name}`);
  }

  private keyBuf(op: string, key: K): Buffer {
    const b = this.keyCodec.encode(key);
    if (b.length !== this.info.keySize)
      throw new SizeMismatchError(`${op} ${this.info.name}`, 'key', this.info.keySize, b.length);
    return b;
  }

  private valueBuf(op: string, value: V): Buffer {
    const b = this.valueCodec.encode(value);
    if (b.length !== this.valueBytes)
      throw new SizeMismatchError(`${op} ${this.info.name}`, 'value', this.valueBytes, b.length);
    return b;
  }

  private fail(op: string, rc: number): never {
    const errno = -rc;
    if (errno === constants.errno.ENOENT) throw new KeyNotExistError(`${op} ${this.info.name}`);
    throw new DatapathError(`${op} ${this.info.name}`, errno);
  }

  /** The value for key; throws KeyNotExistError when absent. */
  lookup(key: K): V {
    this.check('lookup');
    const v = Buffer.alloc(this.valueBytes);
    const rc = lib().bpf_map_lookup_elem(this.mapFd, this.keyBuf('lookup', key), v);
    if (rc < 0) this.fail('lookup', rc);
    return this.valueCodec.decode(v);
  }

  /** The value for key, or undefined when absent. */
  get(key: K): V | undefined {
    try {
      return this.lookup(key);
    } catch (err) {
      if (err instanceof KeyNotExistError) return undefined;
      throw err;
    }
  }

  update(key: K, value: V, flags: bigint = UpdateFlags.Any): void {
    this.check('update');
    const rc = lib().bpf_map_update_elem(
      this.mapFd,
      this.keyBuf('update', key),
      this.valueBuf('update', value),
      flags,
    );
    if (rc < 0) this.fail('update', rc);
  }

  /** Deletes key; throws KeyNotExistError when absent. */
  delete(key: K): void {
    this.check('delete');
    const rc = lib().bpf_map_delete_elem(this.mapFd, this.keyBuf('delete', key));
    if (rc < 0) this.fail('delete', rc);
  }

  /** Deletes key; returns false when it was absent. */
  tryDelete(key: K): boolean {
    try {
      this.delete(key);
      return true;
    } catch (err) {
      if (err instanceof KeyNotExistError) return false;
      throw err;
    }
  }

  /** All keys, by BPF_MAP_GET_NEXT_KEY (a snapshot taken before the first yield). */
  keys(): K[] {
    this.check('iterate');
    const out: K[] = [];
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.info.keySize);
      const rc = lib().bpf_map_get_next_key(this.mapFd, prev, next);
      if (rc === -constants.errno.ENOENT) break;
      if (rc < 0) this.fail('iterate', rc);
      out.push(this.keyCodec.decode(next));
      prev = next;
      if (out.length > this.info.maxEntries * 2 + 16) {
        throw new DatapathError(
          `iterate ${this.info.name}`,
          0,
          'iteration did not terminate (map changed underneath)',
        );
      }
    }
    return out;
  }

  /** All entries (keys deleted during the walk are skipped). */
  *entries(): Generator<[K, V]> {
    for (const k of this.keys()) {
      const v = this.get(k);
      if (v !== undefined) yield [k, v];
    }
  }

  /** Reads all entries with BPF_MAP_LOOKUP_BATCH (hash and array maps; not LPM tries). */
  lookupBatch(chunk = 256): Array<[K, V]> {
    this.check('lookup batch');
    const out: Array<[K, V]> = [];
    const keys = Buffer.alloc(this.info.keySize * chunk);
    const values = Buffer.alloc(this.valueBytes * chunk);
    const tokenSize = Math.max(8, this.info.keySize);
    let inBatch: Buffer | null = null;
    const opts = { sz: 24, elem_flags: 0n, flags: 0n };
    for (;;) {
      const outBatch = Buffer.alloc(tokenSize);
      const count = [chunk];
      const rc = lib().bpf_map_lookup_batch(this.mapFd, inBatch, outBatch, keys, values, count, opts);
      if (rc < 0 && rc !== -constants.errno.ENOENT)
        throw new DatapathError(`lookup batch ${this.info.name}`, -rc);
      const n = count[0] ?? 0;
      for (let i = 0; i < n; i++) {
        out.push([
          this.keyCodec.decode(keys, i * this.info.keySize),
          this.valueCodec.decode(values.subarray(i * this.valueBytes, (i + 1) * this.valueBytes)),
        ]);
      }
      if (rc === -constants.errno.ENOENT) break;
      inBatch = outBatch;
    }
    return out;
  }

  /** Writes all entries with BPF_MAP_UPDATE_BATCH. Returns how many were written. */
  updateBatch(entries: ReadonlyArray<readonly [K, V]>, flags: bigint = UpdateFlags.Any): number {
    this.check('update batch');
    if (entries.length === 0) return 0;
    const keys = Buffer.concat(entries.map(([k]) => this.keyBuf('update batch', k)));
    const values = Buffer.concat(entries.map(([, v]) => this.valueBuf('update batch', v)));
    const count = [entries.length];
    const rc = lib().bpf_map_update_batch(this.mapFd, keys, values, count, {
      sz: 24,
      elem_flags: flags,
      flags: 0n,
    });
    if (rc < 0) throw new DatapathError(`update batch ${this.info.name}`, -rc, undefined, undefined);
    return count[0] ?? 0;
  }

  /** Deletes keys with BPF_MAP_DELETE_BATCH. Stops at the first absent key (KeyNotExistError). */
  deleteBatch(keyList: readonly K[]): number {
    this.check('delete batch');
    if (keyList.length === 0) return 0;
    const keys = Buffer.concat(keyList.map((k) => this.keyBuf('delete batch', k)));
    const count = [keyList.length];
    const rc = lib().bpf_map_delete_batch(this.mapFd, keys, count, { sz: 24, elem_flags: 0n, flags: 0n });
    if (rc < 0) this.fail('delete batch', rc);
    return count[0] ?? 0;
  }

  /** Idempotent; the fd itself belongs to the object that loaded the map. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose?.();
  }
}
