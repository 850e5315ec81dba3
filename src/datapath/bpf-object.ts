/**
 * A loaded BPF ELF object. Before loading, every map gets a pin path under the pin directory so
 * that maps already pinned there (a previous run) are reused, and new ones are created and pinned.
 */
import { existsSync } from 'node:fs';
import { ClosedError } from '../errors.js';
import { DatapathError, DatapathInputError, PinMismatchError, VerifierError } from './errors.js';
import { lastErrno, lib, type Ptr } from './libbpf.js';
import { withLibbpfLog } from './libbpf-log.js';
import { ensurePinDir } from './bpffs.js';
import { BpfMap, type MapInfo } from './map.js';
import type { Codec } from './wire.js';

export interface BpfObjectOptions {
  /** bpffs directory for the pins; no pinning when omitted (maps live as long as the object). */
  pinDir?: string;
  /**
   * max_entries by map name, set before loading (bytes for a ring buffer: a power of two, a
   * multiple of the page size). A map pinned with another size does not match: PinMismatchError.
   */
  maxEntries?: Readonly<Record<string, number>>;
}

export class BpfObject {
  private obj: Ptr;
  private readonly maps = new Map<string, Ptr>();
  readonly path: string;
  readonly pinDir: string | undefined;

  private constructor(obj: Ptr, path: string, pinDir: string | undefined) {
    this.obj = obj;
    this.path = path;
    this.pinDir = pinDir;
  }

  /** Opens and loads `path`. Throws VerifierError (with the log) or PinMismatchError on failure. */
  static load(path: string, opts: BpfObjectOptions = {}): BpfObject {
    if (!existsSync(path))
      throw new DatapathInputError(`open ${path}`, 'no such file (run npm run build:bpf)');
    if (opts.pinDir !== undefined) ensurePinDir(opts.pinDir);
    const l = lib();
    const opened = withLibbpfLog(() => {
      const o = l.bpf_object__open_file(path, null);
      return { o, errno: o ? 0 : lastErrno() };
    });
    if (!opened.result.o) {
      throw new DatapathError(`open ${path}`, opened.result.errno, opened.log.trim() || undefined);
    }
    const obj = opened.result.o;
    const self = new BpfObject(obj, path, opts.pinDir);
    try {
      for (let m = l.bpf_object__next_map(obj, null); m; m = l.bpf_object__next_map(obj, m)) {
        const name = l.bpf_map__name(m);
        self.maps.set(name, m);
        const size = opts.maxEntries?.[name];
        if (size !== undefined) {
          const rc = l.bpf_map__set_max_entries(m, size);
          if (rc < 0) throw new DatapathError(`set max_entries ${name} to ${size}`, -rc);
        }
        if (opts.pinDir !== undefined) {
          const rc = l.bpf_map__set_pin_path(m, `${opts.pinDir}/${name}`);
          if (rc < 0) throw new DatapathError(`set pin path ${name}`, -rc);
        } else {
          const rc = l.bpf_map__set_pin_path(m, null as unknown as string);
          if (rc < 0) throw new DatapathError(`clear pin path ${name}`, -rc);
        }
      }
      for (const name of Object.keys(opts.maxEntries ?? {})) {
        if (!self.maps.has(name))
          throw new DatapathInputError(`set max_entries ${name}`, `no such map in ${path}`);
      }
      const loaded = withLibbpfLog(() => l.bpf_object__load(obj));
      if (loaded.result < 0) {
        const errno = -loaded.result;
        const log = loaded.log;
        if (/pinned map/i.test(log)) throw new PinMismatchError(`load ${path}`, errno, log);
        if (/BEGIN PROG LOAD LOG|failed to load program|verifier/i.test(log))
          throw new VerifierError(`load ${path}`, errno, log);
        throw new DatapathError(`load ${path}`, errno, log.trim() || undefined);
      }
    } catch (err) {
      self.close();
      throw err;
    }
    return self;
  }

  private handle(): Ptr {
    if (!this.obj) throw new ClosedError(`bpf object ${this.path}`);
    return this.obj;
  }

  mapNames(): string[] {
    return [...this.maps.keys()];
  }

  mapInfo(name: string): MapInfo & { fd: number; pinPath: string | null } {
    this.handle();
    const m = this.maps.get(name);
    if (!m) throw new DatapathInputError(`find map ${name}`, `no such map in ${this.path}`);
    const l = lib();
    return {
      name,
      type: l.bpf_map__type(m),
      keySize: l.bpf_map__key_size(m),
      valueSize: l.bpf_map__value_size(m),
      maxEntries: l.bpf_map__max_entries(m),
      fd: l.bpf_map__fd(m),
      pinPath: l.bpf_map__pin_path(m),
    };
  }

  /** A typed handle on one of the object's maps (valid until the object is closed). */
  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    const info = this.mapInfo(name);
    if (info.fd < 0) throw new DatapathError(`map fd ${name}`, -info.fd);
    return new BpfMap(info, info.fd, key, value);
  }

  /** File descriptor of a loaded program. */
  programFd(name: string): number {
    const l = lib();
    const p = l.bpf_object__find_program_by_name(this.handle(), name);
    if (!p) throw new DatapathInputError(`find program ${name}`, `no such program in ${this.path}`);
    const fd = l.bpf_program__fd(p);
    if (fd < 0) throw new DatapathError(`program fd ${name}`, -fd);
    return fd;
  }

  programNames(): string[] {
    const l = lib();
    const obj = this.handle();
    const out: string[] = [];
    for (let p = l.bpf_object__next_program(obj, null); p; p = l.bpf_object__next_program(obj, p))
      out.push(l.bpf_program__name(p));
    return out;
  }

  /**
   * Pins again every map whose pin file is gone (removed from bpffs under a running daemon), from
   * the fd this object holds: the same map, so a restart finds the live entries where it expects
   * them. Returns the names re-pinned; throws DatapathError when a pin cannot be made.
   */
  repinMissing(): string[] {
    this.handle();
    if (this.pinDir === undefined) return [];
    const l = lib();
    const out: string[] = [];
    for (const [name, m] of this.maps) {
      const path = l.bpf_map__pin_path(m);
      if (!path || existsSync(path)) continue;
      ensurePinDir(this.pinDir);
      const rc = withLibbpfLog(() => l.bpf_obj_pin(l.bpf_map__fd(m), path)).result;
      if (rc < 0) throw new DatapathError(`re-pin ${name} at ${path}`, -rc);
      out.push(name);
    }
    return out;
  }

  /** Closes the object and its fds. Pins (and attachments) stay. Idempotent. */
  close(): void {
    if (!this.obj) return;
    lib().bpf_object__close(this.obj);
    this.obj = null;
    this.maps.clear();
  }
}
