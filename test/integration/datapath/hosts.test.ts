/**
 * The exact-match host map ma_hosts against the real kernel: the programs try it before the LPM
 * trie, and Datapath keeps it equal to the trie's host entries through every write path
 * (upsert, delete, syncIpcache, applyDelta, open()).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuthType,
  BpfObject,
  Datapath,
  IDENTITY_UNRESOLVED,
  buildTcpSyn,
  removePinFiles,
  wire,
  type BpfMap,
  type IpcacheEntry,
  type VerdictCounters,
} from '../../../src/datapath/index.js';
import { isPrivileged } from '../../helpers/netns.js';
import { OBJECT_PATH, openDatapath, openFds, randomPinDir } from './helpers.js';

const TC_ACT_UNSPEC = -1;
const TC_ACT_STOLEN = 4;

const LOCAL = '10.1.0.1';
const REMOTE = '10.2.0.7';
const LOCAL6 = 'fd00:1::1';
const REMOTE6 = 'fd00:2::7';

const zero = (): VerdictCounters =>
  Object.fromEntries(wire.VERDICT_NAMES.map((n) => [n, 0n])) as VerdictCounters;

const byCidr = (a: IpcacheEntry, b: IpcacheEntry): number => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0);

/** The trie's host entries (/32, /128), which ma_hosts must equal. */
function trieHosts(dp: Datapath): IpcacheEntry[] {
  return dp
    .listIpcache()
    .filter((e) => e.cidr.endsWith('/32') || e.cidr.endsWith('/128'))
    .sort(byCidr);
}

function expectConsistent(dp: Datapath): void {
  expect(dp.listHosts().sort(byCidr)).toEqual(trieHosts(dp));
}

describe.skipIf(!isPrivileged())('exact-match host map (ma_hosts)', () => {
  let pinDir: string;
  let dp: Datapath;
  let fdsBefore: number;
  /** A second handle on the same pinned maps, to write ma_hosts behind Datapath's back. */
  let raw: BpfObject;
  let rawHosts: BpfMap<string, { identity: number; nodeId: number }>;

  const egress = (src: string, dst: string): number =>
    dp.testRun(wire.PROGRAMS.tcEgress, { data: buildTcpSyn({ src, dst }) }).retval;

  beforeAll(() => {
    fdsBefore = openFds();
    pinDir = randomPinDir();
    dp = openDatapath(pinDir, { signalThrottleMs: 3_600_000, wireguardIfindex: 0, strictWireguard: false });
    raw = BpfObject.load(OBJECT_PATH, { pinDir });
    rawHosts = raw.map(wire.MAPS.hosts.name, wire.hostKey, wire.ipcacheValue);
  });

  afterAll(() => {
    rawHosts?.close();
    raw?.close();
    dp?.close();
    if (pinDir) Datapath.removePins(pinDir);
    expect(openFds()).toBe(fdsBefore);
  });

  beforeEach(() => {
    dp.syncIpcache([
      { cidr: `${LOCAL}/32`, identity: 10, nodeId: 0 },
      { cidr: '10.2.0.0/24', identity: IDENTITY_UNRESOLVED, nodeId: 2 },
      { cidr: `${LOCAL6}/128`, identity: 10, nodeId: 0 },
      { cidr: 'fd00:2::/64', identity: IDENTITY_UNRESOLVED, nodeId: 2 },
    ]);
    dp.syncPolicy([
      { localId: 10, remoteId: 20, authType: AuthType.SpiffeMtls },
      { localId: 10, remoteId: IDENTITY_UNRESOLVED, authType: AuthType.SpiffeMtls },
    ]);
    for (const [k] of [...dp.auth.entries()]) dp.auth.delete(k);
    dp.auth.update(
      { localId: 10, remoteId: 20, remoteNode: 2, authType: AuthType.SpiffeMtls },
      { expiresAtMs: Date.now() + 60_000 },
    );
    dp.clearThrottle();
    dp.resetCounters();
  });

  it('holds exactly the host entries of the trie, not the CIDRs', () => {
    expect(dp.listHosts().sort(byCidr)).toEqual([
      { cidr: `${LOCAL}/32`, identity: 10, nodeId: 0 },
      { cidr: `${LOCAL6}/128`, identity: 10, nodeId: 0 },
    ]);
  });

  it('a host entry wins over the pod CIDR that covers it, and its removal falls back to the CIDR', () => {
    // no host entry yet: the pod CIDR says "unresolved pod address", which fails closed
    expect(egress(LOCAL, REMOTE)).toBe(TC_ACT_STOLEN);
    dp.upsertIpcache({ cidr: `${REMOTE}/32`, identity: 20, nodeId: 2 });
    dp.upsertIpcache({ cidr: `${REMOTE6}/128`, identity: 20, nodeId: 2 });
    expectConsistent(dp);
    expect(egress(LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);
    expect(egress(LOCAL6, REMOTE6)).toBe(TC_ACT_UNSPEC);
    expect(dp.deleteIpcache(`${REMOTE}/32`)).toBe(true);
    expect(dp.deleteIpcache(REMOTE6)).toBe(true);
    expectConsistent(dp);
    expect(rawHosts.get(REMOTE)).toBeUndefined();
    expect(egress(LOCAL, REMOTE)).toBe(TC_ACT_STOLEN);
    expect(egress(LOCAL6, REMOTE6)).toBe(TC_ACT_STOLEN);
    expect(dp.counters()).toEqual({
      ...zero(),
      drop_unresolved_pod_ip: 3n,
      pass_authenticated: 2n,
      // one signal for the key (10, unresolved, node 2) of both families, then throttled
      signal_sent: 1n,
      signal_throttled: 2n,
    });
  });

  it('is what the programs read first: a host entry the trie lacks decides the verdict', () => {
    // Written behind Datapath's back (never done by meshauth): shows the kernel's lookup order.
    rawHosts.update(REMOTE, { identity: 20, nodeId: 2 });
    expect(dp.lookupIpcache(REMOTE)?.identity).toBe(IDENTITY_UNRESOLVED); // the trie alone
    expect(egress(LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toEqual({ ...zero(), pass_authenticated: 1n });
    // the sock_ops program uses the same lookup; the next full sync removes the stray entry
    dp.syncIpcache(dp.listIpcache());
    expect(rawHosts.get(REMOTE)).toBeUndefined();
    expect(egress(LOCAL, REMOTE)).toBe(TC_ACT_STOLEN);
  });

  it('follows applyDelta: upserts, replacements, removals, and a prefix removed and re-added', () => {
    dp.applyDelta({
      ipcacheUpsert: [
        { cidr: `${REMOTE}/32`, identity: 20, nodeId: 2 },
        { cidr: '10.2.0.8/32', identity: 21, nodeId: 2 },
        { cidr: '10.3.0.0/24', identity: IDENTITY_UNRESOLVED, nodeId: 3 },
        { cidr: `${REMOTE6}/128`, identity: 20, nodeId: 2 },
      ],
    });
    expectConsistent(dp);
    expect(dp.listHosts()).toHaveLength(5);
    expect(egress(LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);

    // the pod moved to another identity, one pod left, the IPv6 one is removed and re-added
    dp.applyDelta({
      ipcacheUpsert: [
        { cidr: `${REMOTE}/32`, identity: 22, nodeId: 2 },
        { cidr: 'fd00:2:0:0::7/128', identity: 20, nodeId: 2 },
      ],
      ipcacheRemove: ['10.2.0.8', '10.3.0.0/24', 'fd00:2::7'],
    });
    expectConsistent(dp);
    expect(rawHosts.get(REMOTE)).toEqual({ identity: 22, nodeId: 2 });
    expect(rawHosts.get('10.2.0.8')).toBeUndefined();
    expect(rawHosts.get(REMOTE6)).toEqual({ identity: 20, nodeId: 2 });
    // 10 -> 22 has no policy: the replaced host entry is what the program used
    expect(egress(LOCAL, REMOTE)).toBe(TC_ACT_UNSPEC);
    expect(dp.counters()).toMatchObject({ pass_authenticated: 1n, pass_no_policy: 1n });
  });

  it('syncIpcache writes missing host entries, fixes wrong ones and removes stray ones', () => {
    const desired = [...dp.listIpcache(), { cidr: `${REMOTE}/32`, identity: 20, nodeId: 2 }];
    dp.upsertIpcache({ cidr: `${REMOTE}/32`, identity: 20, nodeId: 2 });
    rawHosts.delete(`${LOCAL}/32`); // missing
    rawHosts.update(REMOTE, { identity: 99, nodeId: 9 }); // wrong
    rawHosts.update('10.9.9.9', { identity: 5, nodeId: 1 }); // stray
    const r = dp.syncIpcache(desired);
    expect(r).toEqual({ added: 0, updated: 0, removed: 0 }); // the trie was already right
    expectConsistent(dp);
    expect(dp.listHosts()).toHaveLength(3);
  });

  it('open() rebuilds a stale host map from the trie (a build without ma_hosts wrote the trie)', () => {
    const fds = openFds();
    const dir = randomPinDir();
    try {
      const a = openDatapath(dir);
      a.upsertIpcache({ cidr: '10.5.0.1/32', identity: 5, nodeId: 0 });
      a.upsertIpcache({ cidr: '10.6.0.0/16', identity: 6, nodeId: 1 });
      a.close();
      // what an older build does: trie written, ma_hosts untouched
      const old = BpfObject.load(OBJECT_PATH, { pinDir: dir });
      const trie = old.map(wire.MAPS.ipcache.name, wire.ipcacheKey, wire.ipcacheValue);
      const hosts = old.map(wire.MAPS.hosts.name, wire.hostKey, wire.ipcacheValue);
      trie.delete('10.5.0.1/32');
      trie.update('10.5.0.2/32', { identity: 7, nodeId: 0 });
      hosts.close();
      trie.close();
      old.close();

      const b = openDatapath(dir);
      try {
        expect(b.listHosts()).toEqual([{ cidr: '10.5.0.2/32', identity: 7, nodeId: 0 }]);
      } finally {
        b.close();
      }
    } finally {
      Datapath.removePins(dir);
    }
    expect(openFds()).toBe(fds);
  });

  it('a map pinned before ma_hosts existed gets ma_hosts created next to it on open', () => {
    const dir = randomPinDir();
    try {
      const a = openDatapath(dir);
      a.upsertIpcache({ cidr: '10.5.0.1/32', identity: 5, nodeId: 0 });
      a.close();
      removePinFiles(dir, [wire.MAPS.hosts.name]); // the pins an older build leaves
      expect(Datapath.hasPins(dir)).toBe(true);
      const b = openDatapath(dir);
      try {
        expect(b.listHosts()).toEqual([{ cidr: '10.5.0.1/32', identity: 5, nodeId: 0 }]);
      } finally {
        b.close();
      }
    } finally {
      Datapath.removePins(dir);
    }
  });
});
