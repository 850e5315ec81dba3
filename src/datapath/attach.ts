/**
 * Attaching programs to tc (clsact) hooks and cgroups. Attachments outlive the process by design:
 * tc filters stay on the interface and cgroup attachments stay on the cgroup, so traffic keeps
 * being enforced while the daemon restarts. tc filters use a fixed handle and priority, so a
 * restart replaces the filter instead of adding a second one.
 */
import { constants } from 'node:os';
import { DatapathError, DatapathInputError } from './errors.js';
import { c, lastErrno, lib } from './libbpf.js';
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
const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

export interface TcTarget {
  ifname: string;
  hook: TcHookPoint;
  /** Network namespace (name from `ip netns`, or a path) that holds the interface. */
  netns?: string;
}

function ifindexOf(ifname: string): number {
  const idx = c().if_nametoindex(ifname);
  if (idx === 0) throw new DatapathInputError(`find interface ${ifname}`, 'no such interface');
  return idx;
}

function hookOf(ifindex: number, hook: TcHookPoint): { sz: number; ifindex: number; attach_point: number; parent: number } {
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
    const opts = { sz: 32, prog_fd: progFd, flags: BPF_TC_F_REPLACE, prog_id: 0, handle: TC_HANDLE, priority: TC_PRIORITY };
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
    const rc = lib().bpf_prog_attach(progFd, fd, hook === 'ingress' ? BPF_CGROUP_INET_INGRESS : BPF_CGROUP_INET_EGRESS, 0);
    if (rc < 0) throw new DatapathError(op, -rc);
  });
}

/** Detaches progFd from the cgroup hook. Returns false when it was not attached. */
export function detachCgroupProgram(progFd: number, cgroupPath: string, hook: CgroupHookPoint): boolean {
  const op = `detach cgroup_skb/${hook} ${cgroupPath}`;
  return withCgroupFd(cgroupPath, op, (fd) => {
    const rc = lib().bpf_prog_detach2(progFd, fd, hook === 'ingress' ? BPF_CGROUP_INET_INGRESS : BPF_CGROUP_INET_EGRESS);
    if (rc === -constants.errno.ENOENT) return false;
    if (rc < 0) throw new DatapathError(op, -rc);
    return true;
  });
}
