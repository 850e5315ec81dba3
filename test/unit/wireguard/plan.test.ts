import { describe, expect, it } from 'vitest';
import {
  isEmptyPlan,
  normalizePeers,
  parseWgDump,
  peerFromNode,
  planReconcile,
  wgSetArgs,
  WireguardError,
  type PeerState,
  type WireguardPeer,
} from '../../../src/wireguard/index.js';

const K1 = 'iKvl7u86ADqfbuWWzVbMg6xty/P12AHHmG4qbKe4bXo=';
const K2 = '6E2J7i+xCiUo8qreOUfLj4uS4lZYYuL6PIBJF+HY02o=';
const K3 = 'QPqL37X5dKsf1hiWqNZftSPyJId07bHjOvCnm3bDk0g=';
const OWN = 'sBaMryL6PyxcgZGLbGbt+xjASnIK8SrQu9ebP5uQIHM=';

const b: WireguardPeer = {
  name: 'b',
  publicKey: K1,
  endpoint: '192.168.77.2:51820',
  allowedIPs: ['10.77.2.0/24'],
};
const c: WireguardPeer = {
  name: 'c',
  publicKey: K2,
  endpoint: '192.168.77.3:51820',
  allowedIPs: ['10.77.3.0/24', 'fd00:77:3::/64'],
  persistentKeepaliveSec: 25,
};

function state(p: Partial<PeerState> & { publicKey: string }): PeerState {
  return {
    hasPresharedKey: false,
    endpoint: undefined,
    allowedIPs: [],
    latestHandshakeMs: undefined,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepaliveSec: undefined,
    ...p,
  };
}

describe('normalizePeers', () => {
  it('canonicalizes and drops this node', () => {
    const peers = normalizePeers(
      [
        { ...b, allowedIPs: ['10.77.2.9/24', '10.77.2.0/24'] },
        { name: 'self', publicKey: OWN, endpoint: '1.1.1.1:1', allowedIPs: [] },
      ],
      OWN,
    );
    expect(peers).toEqual([
      {
        name: 'b',
        publicKey: K1,
        endpoint: '192.168.77.2:51820',
        allowedIPs: ['10.77.2.0/24'],
        persistentKeepaliveSec: 0,
      },
    ]);
  });

  it('rejects bad keys, duplicate keys, shared prefixes, bad endpoints', () => {
    const cases: WireguardPeer[][] = [
      [{ ...b, publicKey: 'bad' }],
      [b, { ...c, publicKey: K1 }],
      [b, { ...c, allowedIPs: ['10.77.2.128/24'] }],
      [{ ...b, endpoint: 'node-b:51820' }],
      [{ ...b, allowedIPs: ['10.77.2.0/40'] }],
      [{ ...b, persistentKeepaliveSec: -1 }],
    ];
    for (const peers of cases) {
      let err: unknown;
      try {
        normalizePeers(peers);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(WireguardError);
      expect((err as WireguardError).code).toBe('MESHAUTH_ERR_WIREGUARD_PEER_INVALID');
    }
  });
});

describe('planReconcile', () => {
  it('adds everything on an empty device', () => {
    const plan = planReconcile(normalizePeers([b, c]), [], []);
    expect(plan.peers.map((p) => p.kind)).toEqual(['add', 'add']);
    expect(plan.routes).toEqual([
      { kind: 'add', cidr: '10.77.2.0/24' },
      { kind: 'add', cidr: '10.77.3.0/24' },
      { kind: 'add', cidr: 'fd00:77:3::/64' },
    ]);
  });

  it('is empty when the device matches (whatever the order and spelling wg printed)', () => {
    const current = [
      state({
        publicKey: K2,
        endpoint: '192.168.77.3:51820',
        allowedIPs: ['fd00:77:3:0::/64', '10.77.3.0/24'],
        persistentKeepaliveSec: 25,
      }),
      state({ publicKey: K1, endpoint: '192.168.77.2:51820', allowedIPs: ['10.77.2.0/24'] }),
    ];
    const plan = planReconcile(normalizePeers([b, c]), current, [
      'fd00:77:3::/64',
      '10.77.3.0/24',
      '10.77.2.0/24',
    ]);
    expect(isEmptyPlan(plan)).toBe(true);
  });

  it('updates only what differs and removes stale peers and routes', () => {
    const current = [
      state({ publicKey: K1, endpoint: '192.168.77.99:51820', allowedIPs: ['10.77.2.0/24'] }),
      state({ publicKey: K2, endpoint: '192.168.77.3:51820', allowedIPs: ['10.77.3.0/24'] }),
      state({ publicKey: K3, endpoint: '192.168.77.4:51820', allowedIPs: ['10.77.4.0/24'] }),
    ];
    const plan = planReconcile(normalizePeers([b, c]), current, [
      '10.77.2.0/24',
      '10.77.3.0/24',
      '10.77.4.0/24',
    ]);
    expect(plan.peers).toEqual([
      { kind: 'update', peer: expect.objectContaining({ publicKey: K1 }), fields: ['endpoint'] },
      {
        kind: 'update',
        peer: expect.objectContaining({ publicKey: K2 }),
        fields: ['allowed-ips', 'persistent-keepalive'],
      },
      { kind: 'remove', publicKey: K3 },
    ]);
    expect(plan.routes).toEqual([
      { kind: 'add', cidr: 'fd00:77:3::/64' },
      { kind: 'remove', cidr: '10.77.4.0/24' },
    ]);
  });

  it('removes every peer and route when nothing is wanted', () => {
    const current = parseWgDump(
      `(none)\t(none)\t51820\toff\n${K1}\t(none)\t1.2.3.4:5\t10.0.0.0/8\t0\t0\t0\toff\n`,
    ).peers;
    expect(planReconcile([], current, ['10.0.0.0/8'])).toEqual({
      peers: [{ kind: 'remove', publicKey: K1 }],
      routes: [{ kind: 'remove', cidr: '10.0.0.0/8' }],
    });
  });

  it('builds wg set arguments without key material other than the peer public key', () => {
    const [peerB, peerC] = normalizePeers([b, c]);
    if (peerB === undefined || peerC === undefined) throw new Error('missing');
    expect(wgSetArgs('meshauth0', { kind: 'add', peer: peerB })).toEqual([
      'set',
      'meshauth0',
      'peer',
      K1,
      'endpoint',
      '192.168.77.2:51820',
      'persistent-keepalive',
      'off',
      'allowed-ips',
      '10.77.2.0/24',
    ]);
    expect(wgSetArgs('meshauth0', { kind: 'update', peer: peerC, fields: ['endpoint'] })).toContain(
      '10.77.3.0/24,fd00:77:3::/64',
    );
    expect(wgSetArgs('meshauth0', { kind: 'remove', publicKey: K3 })).toEqual([
      'set',
      'meshauth0',
      'peer',
      K3,
      'remove',
    ]);
  });
});

describe('peerFromNode', () => {
  it('maps an inventory node, skipping nodes without a key', () => {
    expect(
      peerFromNode(
        { name: 'n1', address: '10.0.0.1', podCIDRs: ['10.1.0.0/24'], wireguardPublicKey: K1 },
        { port: 51820 },
      ),
    ).toEqual({
      name: 'n1',
      publicKey: K1,
      endpoint: '10.0.0.1:51820',
      allowedIPs: ['10.1.0.0/24'],
    });
    expect(
      peerFromNode(
        { name: 'n6', address: 'fd00::1', podCIDRs: [], wireguardPublicKey: K1 },
        { port: 1, persistentKeepaliveSec: 5 },
      ),
    ).toMatchObject({
      endpoint: '[fd00::1]:1',
      persistentKeepaliveSec: 5,
    });
    expect(peerFromNode({ name: 'n2', address: '10.0.0.2', podCIDRs: [] }, { port: 51820 })).toBeUndefined();
  });
});
