/**
 * Async reader of a BPF ring buffer that never blocks the event loop: the wait (epoll_wait on
 * libbpf's ring-buffer epoll fd) runs on a worker thread through koffi's async calls, and records
 * are consumed on the main thread with ring_buffer__consume. close() wakes a pending wait through
 * an eventfd registered in the same epoll set; the pending read then rejects with ClosedError.
 */
import { ClosedError } from '../errors.js';
import { DatapathError } from './errors.js';
import {
  c,
  copyFromPointer,
  lastErrno,
  lib,
  registerCallback,
  unregisterCallback,
  type Ptr,
} from './libbpf.js';

const EPOLL_CTL_ADD = 1;
const EPOLLIN = 1;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
/** struct epoll_event is packed on x86-64: u32 events; u64 data. */
const EPOLL_EVENT_SIZE = 12;
const MAX_EVENTS = 4;

export interface RingBufReaderOptions {
  /** Only records of exactly this size are returned; others are counted in `badRecords` and skipped. */
  recordSize: number;
  /** Name for error messages (the map name). */
  name?: string;
  /** Upper bound of one wait on the worker thread before it re-arms, ms. Default 1000. */
  waitSliceMs?: number;
}

export class RingBufReader {
  private rb: Ptr;
  private readonly cb: unknown;
  private readonly efd: number;
  private readonly epfd: number;
  private readonly recordSize: number;
  private readonly name: string;
  private readonly sliceMs: number;
  private batch: Buffer[] = [];
  private closed = false;
  private waiting = false;
  private freed = false;
  /** Records dropped because their size did not match `recordSize`. */
  badRecords = 0;
  /** Records returned to callers. */
  records = 0;

  constructor(mapFd: number, opts: RingBufReaderOptions) {
    this.recordSize = opts.recordSize;
    this.name = opts.name ?? `ring buffer fd ${mapFd}`;
    this.sliceMs = opts.waitSliceMs ?? 1000;
    const l = lib();
    this.cb = registerCallback(
      ((_ctx: unknown, data: unknown, size: number | bigint): number => {
        const n = Number(size);
        if (n !== this.recordSize) {
          this.badRecords++;
          return 0;
        }
        this.batch.push(copyFromPointer(data, n));
        return 0;
      }) as (...args: never[]) => unknown,
      l.sampleCallbackType,
    );
    const rb = l.ring_buffer__new(mapFd, this.cb, null, null);
    if (!rb) {
      const errno = lastErrno();
      unregisterCallback(this.cb);
      throw new DatapathError(`open ring buffer ${this.name}`, errno);
    }
    this.rb = rb;
    this.epfd = l.ring_buffer__epoll_fd(rb);
    this.efd = c().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.efd < 0) {
      const errno = lastErrno();
      this.free();
      throw new DatapathError(`eventfd for ${this.name}`, errno);
    }
    const ev = Buffer.alloc(EPOLL_EVENT_SIZE);
    ev.writeUInt32LE(EPOLLIN, 0);
    ev.writeBigUInt64LE(0xffffffffn, 4);
    if (c().epoll_ctl(this.epfd, EPOLL_CTL_ADD, this.efd, ev) < 0) {
      const errno = lastErrno();
      this.free();
      throw new DatapathError(`epoll_ctl for ${this.name}`, errno);
    }
  }

  /** Consumes what is available now without waiting. */
  consumeNow(): Buffer[] {
    if (this.closed) throw new ClosedError(`read ${this.name}`);
    this.batch = [];
    const rc = lib().ring_buffer__consume(this.rb);
    const out = this.batch;
    this.batch = [];
    if (rc < 0) throw new DatapathError(`consume ${this.name}`, -rc);
    this.records += out.length;
    return out;
  }

  /** Resolves with at least one record; rejects with ClosedError once close() was called. */
  async read(): Promise<Buffer[]> {
    let failures = 0;
    for (;;) {
      const now = this.consumeNow();
      if (now.length > 0) return now;
      if (this.waiting) throw new DatapathError(`read ${this.name}`, 0, 'another read is pending');
      const rc = await this.wait();
      if (this.closed) throw new ClosedError(`read ${this.name}`);
      if (rc < 0) {
        if (++failures > 100) throw new DatapathError(`epoll_wait ${this.name}`, 0, 'keeps failing');
      } else {
        failures = 0;
      }
    }
  }

  private wait(): Promise<number> {
    this.waiting = true;
    const events = Buffer.alloc(EPOLL_EVENT_SIZE * MAX_EVENTS);
    return new Promise((resolve) => {
      c().epoll_wait.async(this.epfd, events, MAX_EVENTS, this.sliceMs, (err: unknown, rc: number) => {
        this.waiting = false;
        void events; // keep the buffer alive until the worker thread is done with it
        if (this.closed) this.free();
        resolve(err ? -1 : rc);
      });
    });
  }

  private free(): void {
    if (this.freed) return;
    this.freed = true;
    if (this.rb) lib().ring_buffer__free(this.rb);
    this.rb = null;
    if (this.efd >= 0) c().close(this.efd);
    unregisterCallback(this.cb);
  }

  /** Idempotent. Wakes a pending read, which rejects with ClosedError. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.waiting) {
      const one = Buffer.alloc(8);
      one.writeBigUInt64LE(1n);
      c().write(this.efd, one, 8);
    } else {
      this.free();
    }
  }
}
