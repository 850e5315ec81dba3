/**
 * SYN replay (datapath.synReplay): the first SYN of a cold pair is dropped by the egress-semantics
 * tc program, which copies it into the signal (struct ma_signal.syn). Once the pair is
 * authenticated (the local entry written and the peer's reverse entry known to exist), those bytes
 * are sent once more from the node's network namespace through a raw socket, so the client's
 * socket in SYN_SENT gets its SYN-ACK without waiting for its SYN retransmission timeout. The
 * replayed packet is routed like the forwarded original and crosses the same tc programs (it is
 * checked against the same maps); TCP ignores a duplicate SYN (RFC 9293 §3.10.7.4), so the
 * kernel's own retransmission later is harmless.
 *
 * Only the captured bytes are sent, with the TCP checksum recomputed (a forwarded packet may carry
 * a partial checksum that the device would have completed); the IPv4 header checksum is filled by
 * the kernel (IP_HDRINCL). At most one replay per captured SYN; pending SYNs are bounded in number
 * and expire.
 */

import type { Clock } from '../time.js';
import { DatapathError } from './errors.js';
import { c, lastErrno } from './libbpf.js';
import type { AuthKey } from './types.js';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
/** IPPROTO_RAW: the caller supplies the IP header (IP_HDRINCL implied, IPv6 too since Linux 4.5). */
const IPPROTO_RAW = 255;
const IPPROTO_TCP = 6;

/** Why a pending SYN was not sent (label of meshauth_syn_not_replayed_total). */
export type SynNotReplayedReason =
  | 'expired' // the pair was not authenticated within the pending window
  | 'auth-failed' // authentication of the pair failed
  | 'peer-not-written' // the peer did not confirm its reverse entry
  | 'replaced' // a newer SYN of the same pair took its place
  | 'table-full' // the oldest pending SYN made room for a new one
  | 'malformed' // not a TCP SYN without payload the codec can send
  | 'send-failed'; // sendto failed

/** Sends a packet that starts with its IP header. */
export interface RawPacketSender {
  /** Sends `packet` (IPv4 or IPv6 header first) as it is; throws DatapathError on failure. */
  send(packet: Buffer): void;
  close(): void;
}

function ones(buf: Buffer, sum = 0): number {
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/**
 * Checks that `packet` is a TCP SYN without payload (IPv4 without fragmentation, or IPv6 whose next
 * header is TCP) and returns a copy with the TCP checksum computed over the pseudo-header
 * (RFC 9293 §3.1, RFC 8200 §8.1); undefined for anything else.
 */
export function prepareSyn(packet: Buffer): Buffer | undefined {
  if (packet.length < 40) return undefined;
  const version = packet[0]! >> 4;
  let ipLen: number;
  let pseudo: Buffer;
  let total: number;
  if (version === 4) {
    ipLen = (packet[0]! & 0xf) * 4;
    total = packet.readUInt16BE(2);
    if (ipLen < 20 || packet[9] !== IPPROTO_TCP || (packet.readUInt16BE(6) & 0x3fff) !== 0) return undefined;
    pseudo = Buffer.alloc(12);
    packet.copy(pseudo, 0, 12, 20);
    pseudo[9] = IPPROTO_TCP;
    pseudo.writeUInt16BE(total - ipLen, 10);
  } else if (version === 6) {
    ipLen = 40;
    total = 40 + packet.readUInt16BE(4);
    if (packet[6] !== IPPROTO_TCP) return undefined;
    pseudo = Buffer.alloc(40);
    packet.copy(pseudo, 0, 8, 40);
    pseudo.writeUInt32BE(total - ipLen, 32);
    pseudo[39] = IPPROTO_TCP;
  } else return undefined;
  if (total !== packet.length || packet.length < ipLen + 20) return undefined;
  const doff = (packet[ipLen + 12]! >> 4) * 4;
  if (doff < 20 || ipLen + doff !== total || (packet[ipLen + 13]! & 0x17) !== 0x02) return undefined;
  const out = Buffer.from(packet);
  out.writeUInt16BE(0, ipLen + 16);
  const tcp = out.subarray(ipLen);
  out.writeUInt16BE(fold(ones(tcp, ones(pseudo))), ipLen + 16);
  return out;
}

/** The destination address of an IPv4 or IPv6 packet, as sockaddr_in / sockaddr_in6 bytes. */
function sockaddrFor(packet: Buffer): Buffer {
  if (packet[0]! >> 4 === 4) {
    const a = Buffer.alloc(16);
    a.writeUInt16LE(AF_INET, 0);
    packet.copy(a, 4, 16, 20);
    return a;
  }
  const a = Buffer.alloc(28);
  a.writeUInt16LE(AF_INET6, 0);
  packet.copy(a, 8, 24, 40);
  return a;
}

/** Raw IPPROTO_RAW sockets (one per address family, opened on first use) of the calling thread's network namespace. */
export class RawSocketSender implements RawPacketSender {
  private fds = new Map<number, number>();
  private closed = false;

  /**
   * Opens the IPv4 socket now, in the calling thread's network namespace, so that a missing
   * CAP_NET_RAW (EPERM) shows at start rather than on the first replay. Throws DatapathError.
   */
  open(): this {
    this.socketFor(AF_INET);
    return this;
  }

  private socketFor(family: number): number {
    if (this.closed) throw new DatapathError('raw socket', 0, 'closed');
    let fd = this.fds.get(family);
    if (fd === undefined) {
      fd = c().socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
      if (fd < 0)
        throw new DatapathError(
          `socket(${family === AF_INET ? 'AF_INET' : 'AF_INET6'}, SOCK_RAW, IPPROTO_RAW)`,
          lastErrno(),
        );
      this.fds.set(family, fd);
    }
    return fd;
  }

  send(packet: Buffer): void {
    const fd = this.socketFor(packet[0]! >> 4 === 4 ? AF_INET : AF_INET6);
    const addr = sockaddrFor(packet);
    const n = c().sendto(fd, packet, packet.length, 0, addr, addr.length);
    if (n !== packet.length)
      throw new DatapathError('sendto (raw)', n < 0 ? lastErrno() : 0, n < 0 ? undefined : `short send ${n}`);
  }

  /** Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.values()) c().close(fd);
    this.fds.clear();
  }
}

export interface SynReplayOptions {
  sender: RawPacketSender;
  /** Wall clock and timers (ms); injected so tests drive expiry. */
  clock: Clock;
  /** How long a captured SYN waits for its pair's authentication, ms (default 1000). */
  ttlMs?: number;
  /** Pending SYNs kept at most (default 4096; the oldest makes room). */
  maxPending?: number;
  /** Called once per SYN sent or given up. */
  onReplayed?: (key: AuthKey) => void;
  onNotReplayed?: (reason: SynNotReplayedReason, err?: unknown) => void;
}

interface Pending {
  packet: Buffer;
  atMs: number;
}

function keyOf(k: AuthKey): string {
  return `${k.localId}/${k.remoteId}/${k.remoteNode}/${k.authType}`;
}

/**
 * Pending-SYN table and replay decision. signalled() stores a captured SYN; authenticated() sends
 * it once the peer's entry is confirmed; failed() forgets it.
 */
export class SynReplay {
  private readonly pending = new Map<string, Pending>();
  private readonly ttlMs: number;
  private readonly max: number;
  private closed = false;
  readonly counters = { replayed: 0, notReplayed: {} as Partial<Record<SynNotReplayedReason, number>> };

  constructor(private readonly o: SynReplayOptions) {
    this.ttlMs = o.ttlMs ?? 1000;
    this.max = o.maxPending ?? 4096;
  }

  get size(): number {
    return this.pending.size;
  }

  /** A signal of `key` carried a dropped SYN (egress semantics, enforced pair). */
  signalled(key: AuthKey, syn: Buffer): void {
    if (this.closed) return;
    this.expire();
    const packet = prepareSyn(syn);
    if (!packet) return this.skip('malformed');
    const id = keyOf(key);
    if (this.pending.delete(id)) this.skip('replaced');
    while (this.pending.size >= this.max) {
      const oldest = this.pending.keys().next().value as string;
      this.pending.delete(oldest);
      this.skip('table-full');
    }
    this.pending.set(id, { packet, atMs: this.o.clock.now() });
  }

  /**
   * The local entry of `key` is written. `peerWritten` resolves true once the peer confirmed its
   * reverse entry (undefined: the authentication itself guarantees it, as a per-pair handshake
   * does). The SYN is sent at most once, and only if still pending and not expired.
   */
  async authenticated(key: AuthKey, peerWritten?: Promise<boolean>): Promise<void> {
    const id = keyOf(key);
    const p = this.pending.get(id);
    if (!p) return;
    const ok = peerWritten ? await this.within(peerWritten, p.atMs + this.ttlMs - this.o.clock.now()) : true;
    if (this.pending.get(id) !== p) return; // replaced, failed or sent meanwhile
    this.pending.delete(id);
    if (!ok) return this.skip('peer-not-written');
    if (this.o.clock.now() - p.atMs > this.ttlMs) return this.skip('expired');
    try {
      this.o.sender.send(p.packet);
    } catch (err) {
      return this.skip('send-failed', err);
    }
    this.counters.replayed++;
    this.o.onReplayed?.(key);
  }

  /** `p`, or false when it has not resolved within `ms`. */
  private within(p: Promise<boolean>, ms: number): Promise<boolean> {
    if (ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = this.o.clock.setTimeout(() => resolve(false), ms);
      void p.then(
        (ok) => {
          timer.cancel();
          resolve(ok);
        },
        () => {
          timer.cancel();
          resolve(false);
        },
      );
    });
  }

  /** Authentication of `key` failed: its SYN is never sent. */
  failed(key: AuthKey): void {
    if (this.pending.delete(keyOf(key))) this.skip('auth-failed');
  }

  /** Drops pending SYNs older than the TTL. */
  expire(): void {
    const now = this.o.clock.now();
    for (const [id, p] of this.pending) {
      if (now - p.atMs <= this.ttlMs) break; // insertion order = age order
      this.pending.delete(id);
      this.skip('expired');
    }
  }

  /** Idempotent: forgets pending SYNs and closes the sender. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending.clear();
    this.o.sender.close();
  }

  private skip(reason: SynNotReplayedReason, err?: unknown): void {
    this.counters.notReplayed[reason] = (this.counters.notReplayed[reason] ?? 0) + 1;
    this.o.onNotReplayed?.(reason, err);
  }
}

/**
 * Why replay cannot be used with these tc attach points, or undefined. A SYN sent from the node's
 * network namespace leaves through the routing of the node: it crosses a program of egress
 * semantics on an egress hook (the uplink, the WireGuard interface) again, but not one on an
 * ingress hook (a pod interface's host side), where the original was dropped. Replay would then
 * skip the check that dropped it, so it is refused for such a configuration.
 */
export function synReplayBlocker(
  attach: ReadonlyArray<{ type: string; hook?: string; semantics?: string; interface?: string }>,
): string | undefined {
  const p = attach.find((a) => a.type === 'tc' && a.semantics === 'egress' && a.hook === 'ingress');
  return p
    ? `tc attach point ${p.interface ?? '?'} (hook ingress, semantics egress): a replayed SYN would not cross it`
    : undefined;
}
