/**
 * Attaching programs to tc (clsact) hooks and cgroups. Attachments outlive the process by design:
 * tc filters stay on the interface and cgroup attachments stay on the cgroup, so traffic keeps
 * being enforced while the daemon restarts. tc filters use a fixed handle and priority, so a
 * restart replaces the filter instead of adding a second one. The sock_ops program is attached with
 * BPF_F_ALLOW_MULTI (it only advises the kernel, so it shares the cgroup with other programs,
 * including another node's meshauth in tests); a restart replaces the program that uses the same
 * pinned maps instead of adding a second one.
 */
import { constants } from 'node:os';
import { DatapathError, DatapathInputError } from './errors.js';
import { c, lastErrno, lib, withNativeU32Array } from './libbpf.js';
import { withNetns } from './netns.js';

export type TcHookPoint = 'ingress' | 'egress';

/** tc filter handle ("MA") and priority (first) of meshauth filters. */
export const TC_HANDLE = 0x4d41;
export const TC_PRIORITY = 1;

const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;
const BPF_CGROUP_INET_INGRESS = 0;
const BPF_CGROUP_INET_EGRESS = 1;
const BPF_CGROUP_SOCK_OPS = 3;
const BPF_F_ALLOW_MULTI = 1 << 1;
const BPF_F_REPLACE = 1 << 2;
/** sizeof(struct bpf_prog_info) and offsets in it (linux/bpf.h). */
const PROG_INFO_SIZE = 232;
const PROG_INFO_ID = 4;
const PROG_INFO_NR_MAP_IDS = 52;
const PROG_INFO_MAP_IDS = 56;
const PROG_INFO_NAME = 64;
/** sizeof(struct bpf_map_info) and the offset of its id. */
const MAP_INFO_SIZE = 88;
const MAP_INFO_ID = 4;
const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

export interface TcTarget {
  ifname: string;
  hook: TcHookPoint;
  /** Network namespace (name from `ip netns`, or a path) that holds the interface. */
  netns?: string;
}

/**
 * ifindex of the interface named `ifname` in the caller's network namespace (if_nametoindex(3)).
 * Throws DatapathInputError when there is none.
 */
export function interfaceIndex(ifname: string): number {
  return ifindexOf(ifname);
}

function ifindexOf(ifname: string): number {
  const idx = c().if_nametoindex(ifname);
  if (idx === 0) throw new DatapathInputError(`find interface ${ifname}`, 'no such interface');
  return idx;
}

function hookOf(
  ifindex: number,
  hook: TcHookPoint,
): { sz: number; ifindex: number; attach_point: number; parent: number } {
  return { sz: 24, ifindex, attach_point: hook === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS, parent: 0 };
}

/** Attaches progFd as the meshauth filter of the clsact hook (creating clsact if needed). Returns the ifindex. */
export function attachTcProgram(progFd: number, t: TcTarget): number {
  return withNetns(t.netns, () => {
    const ifindex = ifindexOf(t.ifname);
    const hook = hookOf(ifindex, t.hook);
    const op = `attach tc ${t.hook} ${t.ifname}`;
    const rc = lib().bpf_tc_hook_create(hook);
    if (rc < 0 && rc !== -constants.errno.EEXIST) throw new DatapathError(`${op}: create clsact`, -rc);
    const opts = {
      sz: 32,
      prog_fd: progFd,
      flags: BPF_TC_F_REPLACE,
      prog_id: 0,
      handle: TC_HANDLE,
      priority: TC_PRIORITY,
    };
    const rc2 = lib().bpf_tc_attach(hook, opts);
    if (rc2 < 0) throw new DatapathError(op, -rc2);
    return ifindex;
  });
}

/** Removes the meshauth filter from the hook. Returns false when there was none. */
export function detachTcProgram(t: TcTarget): boolean {
  return withNetns(t.netns, () => {
    const hook = hookOf(ifindexOf(t.ifname), t.hook);
    const opts = { sz: 32, prog_fd: 0, flags: 0, prog_id: 0, handle: TC_HANDLE, priority: TC_PRIORITY };
    const rc = lib().bpf_tc_detach(hook, opts);
    if (rc === -constants.errno.ENOENT || rc === -constants.errno.EINVAL) return false;
    if (rc < 0) throw new DatapathError(`detach tc ${t.hook} ${t.ifname}`, -rc);
    return true;
  });
}

/** Kernel id of the program in the meshauth filter of the hook, or undefined when none. */
export function queryTcProgram(t: TcTarget): number | undefined {
  return withNetns(t.netns, () => {
    const hook = hookOf(ifindexOf(t.ifname), t.hook);
    const opts = { sz: 32, prog_fd: 0, flags: 0, prog_id: 0, handle: TC_HANDLE, priority: TC_PRIORITY };
    const rc = lib().bpf_tc_query(hook, opts);
    if (rc === -constants.errno.ENOENT || rc === -constants.errno.EINVAL) return undefined;
    if (rc < 0) throw new DatapathError(`query tc ${t.hook} ${t.ifname}`, -rc);
    return opts.prog_id;
  });
}

export type CgroupHookPoint = 'ingress' | 'egress';

function withCgroupFd<T>(path: string, op: string, fn: (fd: number) => T): T {
  const fd = c().open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw new DatapathError(`${op}: open ${path}`, lastErrno());
  try {
    return fn(fd);
  } finally {
    c().close(fd);
  }
}

/**
 * Attaches progFd to a cgroup v2 directory in exclusive mode (no BPF_F_ALLOW_MULTI): attaching again
 * (a restart) replaces the previous meshauth program instead of stacking a second one.
 */
export function attachCgroupProgram(progFd: number, cgroupPath: string, hook: CgroupHookPoint): void {
  const op = `attach cgroup_skb/${hook} ${cgroupPath}`;
  withCgroupFd(cgroupPath, op, (fd) => {
    const rc = lib().bpf_prog_attach(
      progFd,
      fd,
      hook === 'ingress' ? BPF_CGROUP_INET_INGRESS : BPF_CGROUP_INET_EGRESS,
      0,
    );
    if (rc < 0) throw new DatapathError(op, -rc);
  });
}

/** Detaches progFd from the cgroup hook. Returns false when it was not attached. */
export function detachCgroupProgram(progFd: number, cgroupPath: string, hook: CgroupHookPoint): boolean {
  const op = `detach cgroup_skb/${hook} ${cgroupPath}`;
  return withCgroupFd(cgroupPath, op, (fd) => {
    const rc = lib().bpf_prog_detach2(
      progFd,
      fd,
      hook === 'ingress' ? BPF_CGROUP_INET_INGRESS : BPF_CGROUP_INET_EGRESS,
    );
    if (rc === -constants.errno.ENOENT) return false;
    if (rc < 0) throw new DatapathError(op, -rc);
    return true;
  });
}

// ---- object info ----

/** A loaded program as the kernel describes it. */
export interface ProgramInfo {
  id: number;
  /** The kernel keeps the first 15 characters. */
  name: string;
  /** Kernel ids of the maps the program uses. */
  mapIds: number[];
}

function objectInfo(fd: number, size: number, op: string, prepare?: (info: Buffer) => void): Buffer {
  const info = Buffer.alloc(size);
  prepare?.(info);
  const len = [size];
  const rc = lib().bpf_obj_get_info_by_fd(fd, info, len);
  if (rc < 0) throw new DatapathError(op, -rc);
  return info;
}

/** Kernel id of a loaded program (by fd). */
export function programIdOf(progFd: number): number {
  return objectInfo(progFd, PROG_INFO_SIZE, 'program info').readUInt32LE(PROG_INFO_ID);
}

/** Kernel id of a map (by fd). */
export function mapIdOf(mapFd: number): number {
  return objectInfo(mapFd, MAP_INFO_SIZE, 'map info').readUInt32LE(MAP_INFO_ID);
}

function programInfoOfFd(fd: number, op: string): ProgramInfo {
  const first = objectInfo(fd, PROG_INFO_SIZE, op);
  const nrMaps = first.readUInt32LE(PROG_INFO_NR_MAP_IDS);
  const { result: info, values: mapIds } = withNativeU32Array(nrMaps, (address) =>
    objectInfo(fd, PROG_INFO_SIZE, op, (b) => {
      b.writeUInt32LE(nrMaps, PROG_INFO_NR_MAP_IDS);
      b.writeBigUInt64LE(address, PROG_INFO_MAP_IDS);
    }),
  );
  const nameBytes = info.subarray(PROG_INFO_NAME, PROG_INFO_NAME + 16);
  const end = nameBytes.indexOf(0);
  return {
    id: info.readUInt32LE(PROG_INFO_ID),
    name: nameBytes.subarray(0, end < 0 ? 16 : end).toString('latin1'),
    mapIds: mapIds.slice(0, Math.min(nrMaps, info.readUInt32LE(PROG_INFO_NR_MAP_IDS))),
  };
}

/** Kernel description of the program with id `id`, or undefined when it is gone. */
export function programInfo(id: number): ProgramInfo | undefined {
  const fd = lib().bpf_prog_get_fd_by_id(id);
  if (fd === -constants.errno.ENOENT) return undefined;
  if (fd < 0) throw new DatapathError(`open program ${id}`, -fd);
  try {
    return programInfoOfFd(fd, `program info ${id}`);
  } finally {
    c().close(fd);
  }
}

// ---- sock_ops ----

function queryCgroupPrograms(cgroupFd: number, type: number, op: string): number[] {
  let cap = 16;
  for (;;) {
    const ids = Buffer.alloc(4 * cap);
    const cnt = [cap];
    const rc = lib().bpf_prog_query(cgroupFd, type, 0, [0], ids, cnt);
    if (rc === -constants.errno.ENOSPC) {
      cap *= 4;
      continue;
    }
    if (rc < 0) throw new DatapathError(op, -rc);
    return Array.from({ length: cnt[0] ?? 0 }, (_v, i) => ids.readUInt32LE(4 * i));
  }
}

/** Programs attached to the cgroup's sock_ops hook (in run order). */
export function querySockOpsPrograms(cgroupPath: string): ProgramInfo[] {
  const op = `query sock_ops ${cgroupPath}`;
  const ids = withCgroupFd(cgroupPath, op, (fd) => queryCgroupPrograms(fd, BPF_CGROUP_SOCK_OPS, op));
  return ids.map((id) => programInfo(id)).filter((p): p is ProgramInfo => p !== undefined);
}

/** Result of attachSockOpsProgram. */
export interface SockOpsAttachResult {
  /** Kernel id of the attached program. */
  programId: number;
  /** Ids of earlier programs of the same owner that it replaced or detached. */
  replaced: number[];
}

/**
 * Attaches progFd to the cgroup's sock_ops hook with BPF_F_ALLOW_MULTI. Programs already attached
 * there that use the map with kernel id `ownerMapId` (the same pinned maps: a previous run of the
 * same node) are replaced in place (BPF_F_REPLACE); other programs are left alone.
 */
export function attachSockOpsProgram(
  progFd: number,
  cgroupPath: string,
  ownerMapId: number,
): SockOpsAttachResult {
  const op = `attach sock_ops ${cgroupPath}`;
  const programId = programIdOf(progFd);
  return withCgroupFd(cgroupPath, op, (cgFd) => {
    const owned = queryCgroupPrograms(cgFd, BPF_CGROUP_SOCK_OPS, op)
      .map((id) => programInfo(id))
      .filter((p): p is ProgramInfo => p !== undefined && p.mapIds.includes(ownerMapId))
      .map((p) => p.id);
    const stale = owned.filter((id) => id !== programId);
    if (owned.includes(programId)) {
      detachByIds(cgFd, stale, op);
      return { programId, replaced: stale };
    }
    const [first, ...rest] = stale;
    if (first === undefined) {
      const rc = lib().bpf_prog_attach(progFd, cgFd, BPF_CGROUP_SOCK_OPS, BPF_F_ALLOW_MULTI);
      if (rc < 0) throw new DatapathError(op, -rc);
      return { programId, replaced: [] };
    }
    const oldFd = lib().bpf_prog_get_fd_by_id(first);
    if (oldFd < 0) throw new DatapathError(`${op}: open program ${first}`, -oldFd);
    try {
      const opts = { sz: 16, flags: BPF_F_ALLOW_MULTI | BPF_F_REPLACE, replace_prog_fd: oldFd };
      const rc = lib().bpf_prog_attach_opts(progFd, cgFd, BPF_CGROUP_SOCK_OPS, opts);
      if (rc < 0) throw new DatapathError(`${op}: replace program ${first}`, -rc);
    } finally {
      c().close(oldFd);
    }
    detachByIds(cgFd, rest, op);
    return { programId, replaced: stale };
  });
}

function detachByIds(cgFd: number, ids: readonly number[], op: string): number {
  let n = 0;
  for (const id of ids) {
    const fd = lib().bpf_prog_get_fd_by_id(id);
    if (fd === -constants.errno.ENOENT) continue;
    if (fd < 0) throw new DatapathError(`${op}: open program ${id}`, -fd);
    try {
      const rc = lib().bpf_prog_detach2(fd, cgFd, BPF_CGROUP_SOCK_OPS);
      if (rc === -constants.errno.ENOENT) continue;
      if (rc < 0) throw new DatapathError(`${op}: detach program ${id}`, -rc);
      n++;
    } finally {
      c().close(fd);
    }
  }
  return n;
}

/**
 * Detaches from the cgroup's sock_ops hook every program that uses the map with kernel id
 * `ownerMapId`. Returns false when there was none.
 */
export function detachSockOpsProgram(cgroupPath: string, ownerMapId: number): boolean {
  const op = `detach sock_ops ${cgroupPath}`;
  return withCgroupFd(cgroupPath, op, (cgFd) => {
    const owned = queryCgroupPrograms(cgFd, BPF_CGROUP_SOCK_OPS, op)
      .map((id) => programInfo(id))
      .filter((p): p is ProgramInfo => p !== undefined && p.mapIds.includes(ownerMapId))
      .map((p) => p.id);
    return detachByIds(cgFd, owned, op) > 0;
  });
}
