/**
 * SYN replay's raw sockets against the real kernel: two network namespaces joined by a veth pair.
 * A SYN whose TCP checksum is wrong (as a forwarded packet's partial checksum is) is sent from one
 * namespace through SynReplay and RawSocketSender, IPv4 and IPv6; the other namespace answers it
 * with a RST (no listener), which it only does for a segment whose checksum verified.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTcpSyn } from '../../../src/datapath/packets.js';
import { withNetns } from '../../../src/datapath/netns.js';
import { RawSocketSender, SynReplay } from '../../../src/datapath/syn-replay.js';
import { isPrivileged, NetnsLab } from '../../helpers/netns.js';
import { FakeClock } from '../../helpers/fake-clock.js';

function tcpMib(lab: NetnsLab, ns: string): Record<string, number> {
  const lines = lab
    .exec(ns, 'cat', ['/proc/net/snmp'])
    .split('\n')
    .filter((l) => l.startsWith('Tcp:'));
  const [names, values] = lines.map((l) => l.split(/\s+/).slice(1));
  return Object.fromEntries(names!.map((n, i) => [n, Number(values![i])]));
}

describe.skipIf(!isPrivileged())('SYN replay: raw send from a network namespace', () => {
  const lab = new NetnsLab('srr');
  let a: string;
  let b: string;

  beforeAll(() => {
    a = lab.addNamespace('a');
    b = lab.addNamespace('b');
    lab.link(
      { ns: a, ifname: 'eth0', addr: '10.77.0.1/24' },
      { ns: b, ifname: 'eth0', addr: '10.77.0.2/24' },
    );
    lab.exec(a, 'ip', ['addr', 'add', 'fd77::1/64', 'dev', 'eth0', 'nodad']);
    lab.exec(b, 'ip', ['addr', 'add', 'fd77::2/64', 'dev', 'eth0', 'nodad']);
  });

  afterAll(async () => {
    await lab.cleanup();
  });

  it.each([
    ['IPv4', '10.77.0.1', '10.77.0.2'],
    ['IPv6', 'fd77::1', 'fd77::2'],
  ])('%s: the SYN reaches the peer with a valid checksum, once', async (_f, src, dst) => {
    const key = { localId: 1, remoteId: 2, remoteNode: 2, authType: 1 };
    const syn = buildTcpSyn({ src, dst, dstPort: 9, ethernet: false });
    syn.writeUInt16BE(0xbeef, syn.length - 4); // not the segment's checksum
    const replay = new SynReplay({ sender: new RawSocketSender(), clock: new FakeClock() });
    const before = tcpMib(lab, b);
    try {
      replay.signalled(key, syn);
      // The sockets open on first send, in the namespace the thread is in. Without a confirmation
      // to wait for, authenticated() sends before it first yields, so inside withNetns.
      await withNetns(a, () => replay.authenticated(key));
      await replay.authenticated(key);
    } finally {
      replay.close();
    }
    expect(replay.counters.replayed).toBe(1);
    // The peer answered the SYN (closed port: RST); a bad checksum would have been counted instead.
    await expect.poll(() => tcpMib(lab, b)['OutRsts']! - before['OutRsts']!, { timeout: 2000 }).toBe(1);
    const after = tcpMib(lab, b);
    expect(after['InSegs']! - before['InSegs']!).toBe(1);
    expect(after['InCsumErrors']! - before['InCsumErrors']!).toBe(0);
  });
});
