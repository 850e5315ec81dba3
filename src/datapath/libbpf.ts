/**
 * FFI declarations over the system libbpf (libbpf.so.1, API 1.x) and the few libc calls the
 * datapath needs. Loaded lazily on first use so that importing the datapath (codecs, types) needs
 * neither libbpf nor privileges. Everything here is raw: callers in this folder turn negative
 * returns into DatapathError.
 */
import koffi, { type TypeObject } from 'koffi';

type TypeSpec = Parameters<typeof koffi.sizeof>[0];

/** Opaque libbpf handles; null when a call failed. */
export type Ptr = unknown;

export interface TcHook {
  sz: number;
  ifindex: number;
  attach_point: number;
  parent: number;
}

export interface TcOpts {
  sz: number;
  prog_fd: number;
  flags: number;
  prog_id: number;
  handle: number;
  priority: number;
}

export interface TestRunOpts {
  sz: number;
  data_in: Buffer | null;
  data_out: Buffer | null;
  data_size_in: number;
  data_size_out: number;
  ctx_in: Buffer | null;
  ctx_out: Buffer | null;
  ctx_size_in: number;
  ctx_size_out: number;
  retval: number;
  repeat: number;
  duration: number;
  flags: number;
  cpu: number;
  batch_size: number;
}

export interface ProgAttachOpts {
  sz: number;
  flags: number;
  replace_prog_fd: number;
}

export interface BatchOpts {
  sz: number;
  elem_flags: bigint;
  flags: bigint;
}

type Fn<A extends unknown[], R> = ((...args: A) => R) & {
  async: (...args: [...A, (err: unknown, result: R) => void]) => void;
};

export interface Libbpf {
  bpf_object__open_file: Fn<[path: string, opts: null], Ptr>;
  bpf_object__load: Fn<[obj: Ptr], number>;
  bpf_object__close: Fn<[obj: Ptr], void>;
  bpf_object__find_map_by_name: Fn<[obj: Ptr, name: string], Ptr>;
  bpf_object__next_map: Fn<[obj: Ptr, prev: Ptr], Ptr>;
  bpf_object__find_program_by_name: Fn<[obj: Ptr, name: string], Ptr>;
  bpf_object__next_program: Fn<[obj: Ptr, prev: Ptr], Ptr>;
  bpf_program__fd: Fn<[prog: Ptr], number>;
  bpf_program__name: Fn<[prog: Ptr], string>;
  bpf_map__fd: Fn<[map: Ptr], number>;
  bpf_map__name: Fn<[map: Ptr], string>;
  bpf_map__set_pin_path: Fn<[map: Ptr, path: string], number>;
  bpf_map__pin_path: Fn<[map: Ptr], string | null>;
  bpf_map__is_pinned: Fn<[map: Ptr], boolean>;
  bpf_map__key_size: Fn<[map: Ptr], number>;
  bpf_map__value_size: Fn<[map: Ptr], number>;
  bpf_map__max_entries: Fn<[map: Ptr], number>;
  bpf_map__set_max_entries: Fn<[map: Ptr, maxEntries: number], number>;
  bpf_map__type: Fn<[map: Ptr], number>;
  bpf_map_lookup_elem: Fn<[fd: number, key: Buffer, value: Buffer], number>;
  bpf_map_update_elem: Fn<[fd: number, key: Buffer, value: Buffer, flags: bigint], number>;
  bpf_map_delete_elem: Fn<[fd: number, key: Buffer], number>;
  bpf_map_get_next_key: Fn<[fd: number, key: Buffer | null, next: Buffer], number>;
  bpf_map_lookup_batch: Fn<
    [
      fd: number,
      inBatch: Buffer | null,
      outBatch: Buffer,
      keys: Buffer,
      values: Buffer,
      count: number[],
      opts: BatchOpts,
    ],
    number
  >;
  bpf_map_update_batch: Fn<
    [fd: number, keys: Buffer, values: Buffer, count: number[], opts: BatchOpts],
    number
  >;
  bpf_map_delete_batch: Fn<[fd: number, keys: Buffer, count: number[], opts: BatchOpts], number>;
  bpf_obj_get: Fn<[path: string], number>;
  bpf_obj_pin: Fn<[fd: number, path: string], number>;
  bpf_tc_hook_create: Fn<[hook: TcHook], number>;
  bpf_tc_hook_destroy: Fn<[hook: TcHook], number>;
  bpf_tc_attach: Fn<[hook: TcHook, opts: TcOpts], number>;
  bpf_tc_detach: Fn<[hook: TcHook, opts: TcOpts], number>;
  bpf_tc_query: Fn<[hook: TcHook, opts: TcOpts], number>;
  bpf_prog_attach: Fn<[progFd: number, targetFd: number, type: number, flags: number], number>;
  bpf_prog_detach2: Fn<[progFd: number, targetFd: number, type: number], number>;
  bpf_prog_attach_opts: Fn<[progFd: number, targetFd: number, type: number, opts: ProgAttachOpts], number>;
  bpf_prog_query: Fn<
    [
      targetFd: number,
      type: number,
      queryFlags: number,
      attachFlags: number[],
      progIds: Buffer,
      progCnt: number[],
    ],
    number
  >;
  bpf_prog_get_fd_by_id: Fn<[id: number], number>;
  bpf_obj_get_info_by_fd: Fn<[fd: number, info: Buffer, infoLen: number[]], number>;
  bpf_prog_test_run_opts: Fn<[progFd: number, opts: TestRunOpts], number>;
  ring_buffer__new: Fn<[mapFd: number, cb: unknown, ctx: null, opts: null], Ptr>;
  ring_buffer__consume: Fn<[rb: Ptr], number>;
  ring_buffer__epoll_fd: Fn<[rb: Ptr], number>;
  ring_buffer__free: Fn<[rb: Ptr], void>;
  libbpf_set_print: Fn<[fn: unknown], unknown>;
  /** The type of ring_buffer__new's sample callback (for koffi.register). */
  sampleCallbackType: TypeObject;
  printCallbackType: TypeObject;
}

export interface Libc {
  clock_gettime: Fn<[clock: number, ts: { tv_sec: bigint | number; tv_nsec: bigint | number }], number>;
  if_nametoindex: Fn<[name: string], number>;
  vsnprintf: Fn<[buf: Buffer, size: number, fmt: unknown, ap: unknown], number>;
  epoll_wait: Fn<[epfd: number, events: Buffer, maxevents: number, timeout: number], number>;
  epoll_ctl: Fn<[epfd: number, op: number, fd: number, event: Buffer], number>;
  eventfd: Fn<[initval: number, flags: number], number>;
  write: Fn<[fd: number, buf: Buffer, count: number], number>;
  read: Fn<[fd: number, buf: Buffer, count: number], number>;
  close: Fn<[fd: number], number>;
  open: Fn<[path: string, flags: number], number>;
  setns: Fn<[fd: number, nstype: number], number>;
  socket: Fn<[domain: number, type: number, protocol: number], number>;
  sendto: Fn<[fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number], number>;
}

let libbpf: Libbpf | undefined;
let libc: Libc | undefined;

/** The libbpf binding (loads libbpf.so.1 on first call). */
export function lib(): Libbpf {
  if (libbpf) return libbpf;
  const l = koffi.load('libbpf.so.1');
  const obj = koffi.opaque('bpf_object');
  const map = koffi.opaque('bpf_map');
  const prog = koffi.opaque('bpf_program');
  const rb = koffi.opaque('ring_buffer');
  const objPtr = koffi.pointer(obj);
  const mapPtr = koffi.pointer(map);
  const progPtr = koffi.pointer(prog);
  const rbPtr = koffi.pointer(rb);
  const tcHook = koffi.struct('bpf_tc_hook', {
    sz: 'size_t',
    ifindex: 'int',
    attach_point: 'int',
    parent: 'uint32_t',
  });
  const tcOpts = koffi.struct('bpf_tc_opts', {
    sz: 'size_t',
    prog_fd: 'int',
    flags: 'uint32_t',
    prog_id: 'uint32_t',
    handle: 'uint32_t',
    priority: 'uint32_t',
  });
  const testRun = koffi.struct('bpf_test_run_opts', {
    sz: 'size_t',
    data_in: 'void *',
    data_out: 'void *',
    data_size_in: 'uint32_t',
    data_size_out: 'uint32_t',
    ctx_in: 'void *',
    ctx_out: 'void *',
    ctx_size_in: 'uint32_t',
    ctx_size_out: 'uint32_t',
    retval: 'uint32_t',
    repeat: 'int',
    duration: 'uint32_t',
    flags: 'uint32_t',
    cpu: 'uint32_t',
    batch_size: 'uint32_t',
  });
  const batchOpts = koffi.struct('bpf_map_batch_opts', {
    sz: 'size_t',
    elem_flags: 'uint64_t',
    flags: 'uint64_t',
  });
  const progAttachOpts = koffi.struct('bpf_prog_attach_opts', {
    sz: 'size_t',
    flags: 'uint32_t',
    replace_prog_fd: 'int',
  });
  if (koffi.sizeof(progAttachOpts) !== 16)
    throw new Error('libbpf binding: unexpected struct layout on this platform');
  if (
    koffi.sizeof(tcHook) !== 24 ||
    koffi.sizeof(tcOpts) !== 32 ||
    koffi.sizeof(testRun) !== 80 ||
    koffi.sizeof(batchOpts) !== 24
  ) {
    throw new Error('libbpf binding: unexpected struct layout on this platform');
  }
  const sampleCb = koffi.proto('int ring_buffer_sample_fn(void *ctx, void *data, size_t size)');
  const printCb = koffi.proto('int libbpf_print_fn(int level, void *fmt, void *ap)');

  const f = <T>(name: string, result: TypeSpec, args: TypeSpec[]): T =>
    l.func(name, result, args) as unknown as T;
  libbpf = {
    bpf_object__open_file: f('bpf_object__open_file', objPtr, ['str', 'void *']),
    bpf_object__load: f('bpf_object__load', 'int', [objPtr]),
    bpf_object__close: f('bpf_object__close', 'void', [objPtr]),
    bpf_object__find_map_by_name: f('bpf_object__find_map_by_name', mapPtr, [objPtr, 'str']),
    bpf_object__next_map: f('bpf_object__next_map', mapPtr, [objPtr, mapPtr]),
    bpf_object__find_program_by_name: f('bpf_object__find_program_by_name', progPtr, [objPtr, 'str']),
    bpf_object__next_program: f('bpf_object__next_program', progPtr, [objPtr, progPtr]),
    bpf_program__fd: f('bpf_program__fd', 'int', [progPtr]),
    bpf_program__name: f('bpf_program__name', 'str', [progPtr]),
    bpf_map__fd: f('bpf_map__fd', 'int', [mapPtr]),
    bpf_map__name: f('bpf_map__name', 'str', [mapPtr]),
    bpf_map__set_pin_path: f('bpf_map__set_pin_path', 'int', [mapPtr, 'str']),
    bpf_map__pin_path: f('bpf_map__pin_path', 'str', [mapPtr]),
    bpf_map__is_pinned: f('bpf_map__is_pinned', 'bool', [mapPtr]),
    bpf_map__key_size: f('bpf_map__key_size', 'uint32_t', [mapPtr]),
    bpf_map__value_size: f('bpf_map__value_size', 'uint32_t', [mapPtr]),
    bpf_map__max_entries: f('bpf_map__max_entries', 'uint32_t', [mapPtr]),
    bpf_map__set_max_entries: f('bpf_map__set_max_entries', 'int', [mapPtr, 'uint32_t']),
    bpf_map__type: f('bpf_map__type', 'int', [mapPtr]),
    bpf_map_lookup_elem: f('bpf_map_lookup_elem', 'int', ['int', 'void *', 'void *']),
    bpf_map_update_elem: f('bpf_map_update_elem', 'int', ['int', 'void *', 'void *', 'uint64_t']),
    bpf_map_delete_elem: f('bpf_map_delete_elem', 'int', ['int', 'void *']),
    bpf_map_get_next_key: f('bpf_map_get_next_key', 'int', ['int', 'void *', 'void *']),
    bpf_map_lookup_batch: f('bpf_map_lookup_batch', 'int', [
      'int',
      'void *',
      'void *',
      'void *',
      'void *',
      koffi.inout(koffi.pointer('uint32_t', 1)),
      koffi.pointer(batchOpts),
    ]),
    bpf_map_update_batch: f('bpf_map_update_batch', 'int', [
      'int',
      'void *',
      'void *',
      koffi.inout(koffi.pointer('uint32_t', 1)),
      koffi.pointer(batchOpts),
    ]),
    bpf_map_delete_batch: f('bpf_map_delete_batch', 'int', [
      'int',
      'void *',
      koffi.inout(koffi.pointer('uint32_t', 1)),
      koffi.pointer(batchOpts),
    ]),
    bpf_obj_get: f('bpf_obj_get', 'int', ['str']),
    bpf_obj_pin: f('bpf_obj_pin', 'int', ['int', 'str']),
    bpf_tc_hook_create: f('bpf_tc_hook_create', 'int', [koffi.pointer(tcHook)]),
    bpf_tc_hook_destroy: f('bpf_tc_hook_destroy', 'int', [koffi.pointer(tcHook)]),
    bpf_tc_attach: f('bpf_tc_attach', 'int', [koffi.pointer(tcHook), koffi.inout(koffi.pointer(tcOpts))]),
    bpf_tc_detach: f('bpf_tc_detach', 'int', [koffi.pointer(tcHook), koffi.pointer(tcOpts)]),
    bpf_tc_query: f('bpf_tc_query', 'int', [koffi.pointer(tcHook), koffi.inout(koffi.pointer(tcOpts))]),
    bpf_prog_attach: f('bpf_prog_attach', 'int', ['int', 'int', 'int', 'uint32_t']),
    bpf_prog_detach2: f('bpf_prog_detach2', 'int', ['int', 'int', 'int']),
    bpf_prog_attach_opts: f('bpf_prog_attach_opts', 'int', [
      'int',
      'int',
      'int',
      koffi.pointer(progAttachOpts),
    ]),
    bpf_prog_query: f('bpf_prog_query', 'int', [
      'int',
      'int',
      'uint32_t',
      koffi.out(koffi.pointer('uint32_t', 1)),
      'void *',
      koffi.inout(koffi.pointer('uint32_t', 1)),
    ]),
    bpf_prog_get_fd_by_id: f('bpf_prog_get_fd_by_id', 'int', ['uint32_t']),
    bpf_obj_get_info_by_fd: f('bpf_obj_get_info_by_fd', 'int', [
      'int',
      'void *',
      koffi.inout(koffi.pointer('uint32_t', 1)),
    ]),
    bpf_prog_test_run_opts: f('bpf_prog_test_run_opts', 'int', ['int', koffi.inout(koffi.pointer(testRun))]),
    ring_buffer__new: f('ring_buffer__new', rbPtr, ['int', koffi.pointer(sampleCb), 'void *', 'void *']),
    ring_buffer__consume: f('ring_buffer__consume', 'int', [rbPtr]),
    ring_buffer__epoll_fd: f('ring_buffer__epoll_fd', 'int', [rbPtr]),
    ring_buffer__free: f('ring_buffer__free', 'void', [rbPtr]),
    libbpf_set_print: f('libbpf_set_print', 'void *', [koffi.pointer(printCb)]),
    sampleCallbackType: koffi.pointer(sampleCb),
    printCallbackType: koffi.pointer(printCb),
  };
  return libbpf;
}

/** The libc binding (clock, interface names, epoll, eventfd, setns). */
export function c(): Libc {
  if (libc) return libc;
  const l = koffi.load('libc.so.6');
  const timespec = koffi.struct('meshauth_timespec', { tv_sec: 'int64_t', tv_nsec: 'int64_t' });
  const f = <T>(name: string, result: TypeSpec, args: TypeSpec[]): T =>
    l.func(name, result, args) as unknown as T;
  libc = {
    clock_gettime: f('clock_gettime', 'int', ['int', koffi.out(koffi.pointer(timespec))]),
    if_nametoindex: f('if_nametoindex', 'uint32_t', ['str']),
    vsnprintf: f('vsnprintf', 'int', ['void *', 'size_t', 'void *', 'void *']),
    epoll_wait: f('epoll_wait', 'int', ['int', 'void *', 'int', 'int']),
    epoll_ctl: f('epoll_ctl', 'int', ['int', 'int', 'int', 'void *']),
    eventfd: f('eventfd', 'int', ['uint32_t', 'int']),
    write: f('write', 'intptr_t', ['int', 'void *', 'size_t']),
    read: f('read', 'intptr_t', ['int', 'void *', 'size_t']),
    close: f('close', 'int', ['int']),
    open: f('open', 'int', ['str', 'int']),
    setns: f('setns', 'int', ['int', 'int']),
    socket: f('socket', 'int', ['int', 'int', 'int']),
    sendto: f('sendto', 'intptr_t', ['int', 'void *', 'size_t', 'int', 'void *', 'uint32_t']),
  };
  return libc;
}

/** errno of the last FFI call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** Copies `size` bytes at a native pointer (a callback argument) into a new Buffer. */
export function copyFromPointer(ptr: unknown, size: number): Buffer {
  if (size === 0) return Buffer.alloc(0);
  return Buffer.from(new Uint8Array(koffi.view(ptr, size)).slice());
}

export function registerCallback(fn: (...args: never[]) => unknown, type: TypeObject): unknown {
  return koffi.register(fn as (...args: unknown[]) => unknown, type);
}

export function unregisterCallback(cb: unknown): void {
  koffi.unregister(cb as bigint);
}

/**
 * Calls `fn` with the address of a native u32 array of `n` elements (for kernel structs that carry
 * a user pointer, such as bpf_prog_info.map_ids) and returns fn's result with the array contents.
 */
export function withNativeU32Array<T>(
  n: number,
  fn: (address: bigint) => T,
): { result: T; values: number[] } {
  const ptr = koffi.alloc('uint32_t', Math.max(n, 1));
  try {
    const result = fn(BigInt(koffi.address(ptr) as bigint | number));
    const values = n === 0 ? [] : Array.from(koffi.decode(ptr, 'uint32_t', n) as ArrayLike<number>);
    return { result, values };
  } finally {
    koffi.free(ptr);
  }
}
