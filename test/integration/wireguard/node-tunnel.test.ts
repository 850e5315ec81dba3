import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DaemonConfig } from '../../../src/config/types.js';
import { Inventory, type InventoryData, type InventoryNode } from '../../../src/inventory/index.js';
import {
  createExec,
  privateKeyPath,
  startWireguard,
  type Exec,
  type WireguardTunnel,
} from '../../../src/wireguard/index.js';
import { isPrivileged, type NetnsLab } from '../../helpers/netns.js';
import { captureUnderlay, echo, startEcho, twoNodeLab, type LabNode } from './two-nodes.js';

const ECHO_PORT = 7779;
const PORT = 51820;

/**
 * The daemon's entry point against the real tools: two node namespaces, wireguard-go, and an
 * Inventory object that the test edits the way a file reload would.
 */
describe.skipIf(!isPrivileged())('startWireguard: two nodes from the inventory over wireguard-go', () => {
  let lab: NetnsLab;
  let a: LabNode;
  let b: LabNode;
  let ta: WireguardTunnel | undefined;
  let tb: WireguardTunnel | undefined;
  let inventory: Inventory;
  const commands: string[][] = [];

  const invNode = (n: LabNode, key: string | undefined): InventoryNode => ({
    name: n.name,
    address: n.underlayIp,
    podCIDRs: [n.podCidr, n.podCidr6],
    wireguardPublicKey: key,
    handshakePort: undefined,
  });
  const data = (ka: string | undefined, kb: string | undefined): InventoryData => ({
    nodes: [invNode(a, ka), invNode(b, kb)],
    workloads: [],
  });
  const config = (n: LabNode): Pick<DaemonConfig, 'wireguard'> => ({
    wireguard: {
      enabled: true,
      interface: n.wgIf,
      listenPort: PORT,
      address: `10.99.0.${n.underlayIp.split('.')[3]}/32`,
      privateKeyFile: privateKeyPath(n.stateDir),
      userspaceBinary: 'wireguard-go',
    },
  });
  const recording = (ns: string): Exec => {
    const real = createExec({ netns: ns });
    return (file, args) => {
      commands.push([file, ...args]);
      return real(file, args);
    };
  };
  const start = (n: LabNode): Promise<WireguardTunnel> =>
    startWireguard({
      config: config(n),
      inventory,
      nodeName: n.name,
      stateDir: n.stateDir,
      netns: n.ns,
      exec: recording(n.ns),
      resyncIntervalMs: 0,
    });
  const writes = (cmds: string[][]): string[][] =>
    cmds.filter((c) => !(c.includes('show') || (c[0] === 'ip' && c.includes('-j'))));
  const peerOfA = async (t: WireguardTunnel | undefined) => {
    if (t === undefined) throw new Error('tunnel not started');
    return (await t.status()).peers[0];
  };

  beforeAll(async () => {
    ({ lab, a, b } = twoNodeLab('wgt'));
    await startEcho(lab, b, ECHO_PORT);
    inventory = new Inventory(data(undefined, undefined));
  });

  afterAll(async () => {
    for (const t of [ta, tb]) await t?.close({ teardown: true }).catch(() => undefined);
    await lab.cleanup();
  });

  it('first start: keys generated, no peers until the inventory publishes them', async () => {
    ta = await start(a);
    tb = await start(b);
    expect(ta.mode).toBe('userspace');
    expect(ta.publicKey).not.toBe(tb.publicKey);
    const st = await ta.status();
    expect(st.peers).toEqual([]);
    expect(st.inventoryKey).toBe('missing');
    expect(st.nodesWithoutKey).toEqual([b.name]);
    expect(st.ifindex).toBe(ta.ifindex);
    expect(lab.exec(a.ns, 'ip', ['-o', 'link', 'show', 'dev', a.wgIf])).toContain(`${ta.ifindex}:`);
  });

  it('publishing both keys in the inventory brings the tunnel up; the underlay only sees ciphertext', async () => {
    if (ta === undefined || tb === undefined) throw new Error('tunnels not started');
    inventory.replace(data(ta.publicKey, tb.publicKey));
    await vi.waitFor(
      async () => {
        expect((await ta?.status())?.peers.map((p) => p.name)).toEqual([b.name]);
        expect((await tb?.status())?.peers.map((p) => p.name)).toEqual([a.name]);
      },
      { timeout: 10_000, interval: 100 },
    );
    expect((await ta.status()).inventoryKey).toBe('match');
    expect(lab.exec(a.ns, 'ip', ['route', 'show', b.podCidr])).toContain(`dev ${a.wgIf}`);

    const payload = `NODE-TUNNEL-${randomBytes(6).toString('hex')}`;
    const cap = await captureUnderlay(lab, a, () => {
      expect(echo(lab, a, b, ECHO_PORT, payload)).toBe(payload);
    });
    expect(cap.pcap.includes(Buffer.from(payload))).toBe(false);
    expect(cap.text).toContain(`${a.underlayIp}.${PORT} > ${b.underlayIp}.${PORT}: UDP`);
    expect(cap.text).not.toContain(`${a.podIp}.`);
    const peer = await peerOfA(ta);
    expect(peer?.latestHandshakeMs).toBeGreaterThan(0);
  });

  it('daemon restart: close() keeps traffic flowing; the next start adopts it unchanged, same key and session', async () => {
    if (ta === undefined || tb === undefined) throw new Error('tunnels not started');
    const before = await ta.status();
    const peerBefore = before.peers[0];
    expect(peerBefore?.latestHandshakeMs).toBeGreaterThan(0);
    await ta.close();
    expect(echo(lab, a, b, ECHO_PORT, 'during-restart')).toBe('during-restart');

    commands.length = 0;
    ta = await start(a);
    // adopted: nothing written, same key, same interface, same wireguard-go
    expect(writes(commands)).toEqual([]);
    expect(ta.publicKey).toBe(before.publicKey);
    expect(ta.ifindex).toBe(before.ifindex);
    const after = await ta.status();
    expect(after.pid).toBe(before.pid);
    // the session survived: handshake time kept (not reset), counters kept growing
    const peerAfter = after.peers[0];
    expect(peerAfter?.latestHandshakeMs).toBeGreaterThanOrEqual(peerBefore?.latestHandshakeMs ?? Infinity);
    expect(peerAfter?.rxBytes).toBeGreaterThan(peerBefore?.rxBytes ?? Infinity);
    const payload = `AFTER-RESTART-${randomBytes(6).toString('hex')}`;
    expect(echo(lab, a, b, ECHO_PORT, payload)).toBe(payload);
    // B was never told anything: it still holds A's one key
    expect((await tb.status()).peers.map((p) => p.publicKey)).toEqual([ta.publicKey]);
  });

  it('restart after teardown: a new interface with the same key; B needs no change and the handshake is redone', async () => {
    if (ta === undefined || tb === undefined) throw new Error('tunnels not started');
    const key = ta.publicKey;
    const oldIfindex = ta.ifindex;
    const handshakeBefore = (await peerOfA(tb))?.latestHandshakeMs ?? 0;
    await ta.close({ teardown: true });
    expect(lab.exec(a.ns, 'ip', ['link', 'show']).includes(a.wgIf)).toBe(false);
    expect(existsSync(`/var/run/wireguard/${a.wgIf}.sock`)).toBe(false);

    // WireGuard handshake timestamps have one-second resolution: start again in a later second
    // than the last handshake, so that a redone handshake shows as a newer timestamp.
    await vi.waitFor(
      () => expect(Math.floor(Date.now() / 1000)).toBeGreaterThan(Math.floor(handshakeBefore / 1000)),
      {
        timeout: 5_000,
        interval: 50,
      },
    );
    commands.length = 0;
    ta = await start(a);
    expect(ta.publicKey).toBe(key);
    expect(commands.some((c) => c.includes('wireguard-go'))).toBe(true);
    expect(ta.ifindex).not.toBe(oldIfindex);
    expect(echo(lab, a, b, ECHO_PORT, 'back')).toBe('back');
    expect((await peerOfA(tb))?.latestHandshakeMs).toBeGreaterThan(handshakeBefore);
    expect((await tb.status()).peers.map((p) => p.publicKey)).toEqual([key]);
  });

  it('a node leaving the inventory loses its peer and routes', async () => {
    if (ta === undefined) throw new Error('tunnel not started');
    inventory.replace({ nodes: [invNode(a, ta.publicKey)], workloads: [] });
    // peers go first, then routes, in one reconcile: wait for its end
    await vi.waitFor(
      async () => {
        expect((await ta?.status())?.peers).toEqual([]);
        expect(lab.exec(a.ns, 'ip', ['route', 'show', b.podCidr]).trim()).toBe('');
        expect(lab.exec(a.ns, 'ip', ['-6', 'route', 'show', b.podCidr6]).trim()).toBe('');
      },
      { timeout: 10_000, interval: 100 },
    );
    expect((await ta.status()).nodesWithoutKey).toEqual([]);
  });
});
