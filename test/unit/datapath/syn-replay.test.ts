import { describe, expect, it } from 'vitest';
import { buildTcpSyn } from '../../../src/datapath/packets.js';
import {
  prepareSyn,
  SynReplay,
  synReplayBlocker,
  type RawPacketSender,
  type SynNotReplayedReason,
} from '../../../src/datapath/syn-replay.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const KEY = { localId: 10, remoteId: 20, remoteNode: 2, authType: 1 };
const OTHER = { ...KEY, remoteId: 21 };
const v4 = (): Buffer => buildTcpSyn({ src: '10.90.1.11', dst: '10.90.2.11', ethernet: false });
const v6 = (): Buffer => buildTcpSyn({ src: 'fd00:1::1', dst: 'fd00:2::1', ethernet: false });

/** RFC 1071 sum over a TCP segment and its pseudo-header: 0xffff when the checksum is right. */
function verifies(packet: Buffer): boolean {
  const v = packet[0]! >> 4;
  const ipLen = v === 4 ? (packet[0]! & 0xf) * 4 : 40;
  const tcp = packet.subarray(ipLen);
  const pseudo =
    v === 4
      ? Buffer.concat([packet.subarray(12, 20), Buffer.from([0, 6, 0, tcp.length])])
      : Buffer.concat([packet.subarray(8, 40), Buffer.from([0, 0, 0, tcp.length, 0, 0, 0, 6])]);
  let sum = 0;
  for (const b of [pseudo, tcp]) for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}

class Recorder implements RawPacketSender {
  sent: Buffer[] = [];
  fail = false;
  closed = 0;
  send(p: Buffer): void {
    if (this.fail) throw new Error('sendto: ENETUNREACH');
    this.sent.push(p);
  }
  close(): void {
    this.closed++;
  }
}

function setUp(opts: { ttlMs?: number; maxPending?: number } = {}) {
  const clock = new FakeClock(1_000_000);
  const sender = new Recorder();
  const skipped: SynNotReplayedReason[] = [];
  let replayed = 0;
  const r = new SynReplay({
    sender,
    clock,
    ...opts,
    onReplayed: () => replayed++,
    onNotReplayed: (reason) => skipped.push(reason),
  });
  return { clock, sender, skipped, r, replayed: () => replayed };
}

describe('prepareSyn', () => {
  it('keeps every byte of an IPv4 or IPv6 SYN but the TCP checksum, which it completes', () => {
    for (const syn of [v4(), v6()]) {
      syn.writeUInt16BE(0x1234, syn.length - 4); // a partial checksum, as a forwarded skb may carry
      const out = prepareSyn(syn)!;
      expect(out).toHaveLength(syn.length);
      expect(verifies(out)).toBe(true);
      const ck = syn.length - 4;
      expect(Buffer.concat([out.subarray(0, ck), out.subarray(ck + 2)])).toEqual(
        Buffer.concat([syn.subarray(0, ck), syn.subarray(ck + 2)]),
      );
      expect(syn.readUInt16BE(ck)).toBe(0x1234); // the input is not modified
    }
  });

  it('refuses anything that is not a TCP SYN without payload', () => {
    const synAck = v4();
    synAck[20 + 13] = 0x12;
    const rst = v4();
    rst[20 + 13] = 0x06;
    const udp = v4();
    udp[9] = 17;
    const fragment = v4();
    fragment.writeUInt16BE(0x2000, 6); // MF
    const withPayload = Buffer.concat([v4(), Buffer.from('x')]);
    withPayload.writeUInt16BE(41, 2);
    const lengthMismatch = Buffer.concat([v6(), Buffer.alloc(4)]);
    const ext = v6();
    ext[6] = 0; // hop-by-hop options header
    for (const p of [synAck, rst, udp, fragment, withPayload, lengthMismatch, ext, Buffer.alloc(10)])
      expect(prepareSyn(p)).toBeUndefined();
  });
});

describe('SynReplay', () => {
  it('sends a pending SYN once, when the pair is authenticated', async () => {
    const t = setUp();
    t.r.signalled(KEY, v4());
    expect(t.r.size).toBe(1);
    await t.r.authenticated(KEY);
    await t.r.authenticated(KEY); // at most once
    expect(t.sender.sent).toHaveLength(1);
    expect(verifies(t.sender.sent[0]!)).toBe(true);
    expect(t.replayed()).toBe(1);
    expect(t.r.size).toBe(0);
  });

  it('waits for the peer to confirm its entry, and never sends when it does not', async () => {
    const t = setUp();
    t.r.signalled(KEY, v4());
    t.r.signalled(OTHER, v6());
    let confirm!: (ok: boolean) => void;
    const done = t.r.authenticated(KEY, new Promise((r) => (confirm = r)));
    await Promise.resolve();
    expect(t.sender.sent).toHaveLength(0);
    confirm(true);
    await done;
    expect(t.sender.sent).toHaveLength(1);
    await t.r.authenticated(OTHER, Promise.resolve(false));
    expect(t.sender.sent).toHaveLength(1);
    expect(t.skipped).toEqual(['peer-not-written']);
  });

  it('gives up on a confirmation that does not come within the pending window', async () => {
    const t = setUp({ ttlMs: 1000 });
    t.r.signalled(KEY, v4());
    t.clock.advance(400);
    const done = t.r.authenticated(KEY, new Promise<boolean>(() => undefined));
    t.clock.advance(599);
    await Promise.resolve();
    expect(t.skipped).toEqual([]);
    t.clock.advance(1);
    await done;
    expect(t.sender.sent).toHaveLength(0);
    expect(t.skipped).toEqual(['peer-not-written']);
  });

  it('never sends the SYN of a pair whose authentication failed, nor an expired one', async () => {
    const t = setUp({ ttlMs: 1000 });
    t.r.signalled(KEY, v4());
    t.r.failed(KEY);
    await t.r.authenticated(KEY);
    t.r.signalled(OTHER, v4());
    t.clock.advance(1001);
    await t.r.authenticated(OTHER);
    expect(t.sender.sent).toHaveLength(0);
    expect(t.skipped).toEqual(['auth-failed', 'expired']);
  });

  it('is bounded: expired SYNs go on the next signal, the oldest makes room, a newer SYN replaces', async () => {
    const t = setUp({ ttlMs: 1000, maxPending: 2 });
    t.r.signalled(KEY, v4());
    t.clock.advance(1001);
    t.r.signalled(OTHER, v4());
    expect(t.r.size).toBe(1);
    t.r.signalled({ ...KEY, remoteId: 22 }, v4());
    t.r.signalled({ ...KEY, remoteId: 23 }, v4());
    expect(t.r.size).toBe(2);
    const newer = v6();
    t.r.signalled({ ...KEY, remoteId: 23 }, newer);
    expect(t.skipped).toEqual(['expired', 'table-full', 'replaced']);
    await t.r.authenticated({ ...KEY, remoteId: 23 });
    expect(t.sender.sent).toHaveLength(1);
    expect(t.sender.sent[0]!.subarray(0, 40)).toEqual(newer.subarray(0, 40));
  });

  it('counts a malformed capture and a failed send, and close() is idempotent', async () => {
    const t = setUp();
    const synAck = v4();
    synAck[20 + 13] = 0x12;
    t.r.signalled(KEY, synAck);
    expect(t.r.size).toBe(0);
    t.r.signalled(KEY, v4());
    t.sender.fail = true;
    await t.r.authenticated(KEY);
    expect(t.skipped).toEqual(['malformed', 'send-failed']);
    expect(t.replayed()).toBe(0);
    t.r.close();
    t.r.close();
    expect(t.sender.closed).toBe(1);
  });
});

describe('synReplayBlocker', () => {
  it('refuses egress semantics on an ingress hook, where a replayed SYN would not cross the program', () => {
    const uplink = [
      { type: 'tc', interface: 'eth0', hook: 'egress', semantics: 'egress' },
      { type: 'tc', interface: 'eth0', hook: 'ingress', semantics: 'ingress' },
      { type: 'cgroup', path: '/sys/fs/cgroup/pods', hook: 'egress' },
    ];
    expect(synReplayBlocker(uplink)).toBeUndefined();
    expect(
      synReplayBlocker([
        ...uplink,
        { type: 'tc', interface: 'veth-web', hook: 'ingress', semantics: 'egress' },
      ]),
    ).toMatch(/veth-web/);
  });
});
