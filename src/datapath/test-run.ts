/** BPF_PROG_TEST_RUN: push a crafted packet through a loaded program without any traffic. */
import { DatapathError } from './errors.js';
import { lib } from './libbpf.js';

export interface TestRunOptions {
  /** Packet bytes; tc and cgroup_skb programs expect an Ethernet header first. */
  data: Buffer;
  /** Times the kernel runs the program; duration is the mean per run. Default 1. */
  repeat?: number;
  /** skb->ingress_ifindex seen by the program (struct __sk_buff.ingress_ifindex). */
  ingressIfindex?: number;
  /** Capture the (possibly modified) packet. Default false. */
  wantDataOut?: boolean;
}

export interface TestRunResult {
  /** The program's return value (tc: TC_ACT_*, as a signed number; cgroup_skb: 1 allow, 0 drop). */
  retval: number;
  /** Mean ns per run as measured by the kernel. */
  durationNs: number;
  dataOut?: Buffer;
}

/** Offset of ingress_ifindex in struct __sk_buff. */
const SKB_INGRESS_IFINDEX = 36;
/** Bytes of struct __sk_buff passed as context (up to and including ifindex). */
const SKB_CTX_BYTES = 44;

export function testRun(progFd: number, opts: TestRunOptions): TestRunResult {
  const ctx = opts.ingressIfindex !== undefined ? Buffer.alloc(SKB_CTX_BYTES) : null;
  if (ctx) ctx.writeUInt32LE(opts.ingressIfindex ?? 0, SKB_INGRESS_IFINDEX);
  const out = opts.wantDataOut ? Buffer.alloc(opts.data.length + 256) : null;
  const o = {
    sz: 80,
    data_in: opts.data,
    data_out: out,
    data_size_in: opts.data.length,
    data_size_out: out ? out.length : 0,
    ctx_in: ctx,
    ctx_out: null,
    ctx_size_in: ctx ? ctx.length : 0,
    ctx_size_out: 0,
    retval: 0,
    repeat: opts.repeat ?? 1,
    duration: 0,
    flags: 0,
    cpu: 0,
    batch_size: 0,
  };
  const rc = lib().bpf_prog_test_run_opts(progFd, o);
  if (rc < 0) throw new DatapathError(`test run program fd ${progFd}`, -rc);
  const result: TestRunResult = { retval: o.retval | 0, durationNs: o.duration };
  if (out) result.dataOut = out.subarray(0, o.data_size_out);
  return result;
}
