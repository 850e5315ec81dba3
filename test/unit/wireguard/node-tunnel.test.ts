import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DaemonConfig } from '../../../src/config/types.js';
import { Inventory, type InventoryData, type InventoryNode } from '../../../src/inventory/index.js';
import {
  generatePrivateKey,
  publicKeyFromPrivate,
  publicKeyPath,
  startWireguard,
  type WireguardTunnel,
} from '../../../src/wireguard/index.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeHost, isWrite } from './fake-host.js';

const keyB = publicKeyFromPrivate(generatePrivateKey());
const keyC = publicKeyFromPrivate(generatePrivateKey());

/**
 * The fake host answers every command with a resolved promise, so a reconcile runs to its end in
 * microtasks: once a macrotask turn has passed, whatever an event started has finished.
 */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

const node = (name: string, idx: number, wireguardPublicKey: string | undefined): InventoryNode => ({
  name,
  address: `192.168.5.${idx}`,
  podCIDRs: [`10.5.${idx}.0/24`],
  wireguardPublicKey,
  handshakePort: undefined,
});

describe('startWireguard: the tunnel follows the inventory (fake kernel-module host)', () => {
  let dir: string;
  let host: FakeHost;
  let tunnel: WireguardTunnel | undefined;
  const ifname = `matun${process.pid % 10000}`;
  const config = (over: Partial<DaemonConfig['wireguard']> = {}): Pick<DaemonConfig, 'wireguard'> => ({
    wireguard: {
      enabled: true,
      interface: ifname,
      listenPort: 51999,
      address: '10.99.0.1/32',
      privateKeyFile: join(dir, 'wireguard', 'private.key'),
      userspaceBinary: 'wireguard-go',
      ...over,
    },
  });
  const data = (nodes: InventoryNode[]): InventoryData => ({ nodes, workloads: [] });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-wgtun-'));
    host = new FakeHost();
  });
  afterEach(async () => {
    await tunnel?.close();
    tunnel = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('configures peers and routes for the other nodes that have a key; reports the inventory view', async () => {
    const inv = new Inventory(data([node('a', 1, undefined), node('b', 2, keyB), node('c', 3, undefined)]));
    tunnel = await startWireguard({
      config: config(),
      inventory: inv,
      nodeName: 'a',
      stateDir: dir,
      exec: host.exec,
      resyncIntervalMs: 0,
    });
    expect(tunnel.mode).toBe('kernel');
    expect(tunnel.interfaceName).toBe(ifname);
    expect(tunnel.ifindex).toBe(host.link?.ifindex);
    expect(host.publicKey).toBe(tunnel.publicKey);
    expect(host.port).toBe(51999);
    expect([...host.peers.keys()]).toEqual([keyB]);
    expect(host.peers.get(keyB)).toEqual({
      endpoint: '192.168.5.2:51999',
      allowed: ['10.5.2.0/24'],
      keepalive: 0,
    });
    expect([...host.routes]).toEqual(['10.5.2.0/24']);
    expect(statSync(join(dir, 'wireguard', 'private.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(publicKeyPath(dir), 'utf8').trim()).toBe(tunnel.publicKey);

    const st = await tunnel.status();
    expect(st.inventoryKey).toBe('missing');
    expect(st.nodesWithoutKey).toEqual(['c']);
    expect(st.peers.map((p) => [p.name, p.publicKey])).toEqual([['b', keyB]]);
    expect(st.lastReconcile?.error).toBeUndefined();
  });

  it('starts the configured wireguard-go executable where the kernel has no module', async () => {
    host.kernelModule = false;
    const binary = '/opt/meshauth/bin/wireguard-go';
    tunnel = await startWireguard({
      config: config({ userspaceBinary: binary }),
      inventory: new Inventory(data([node('a', 1, undefined), node('b', 2, keyB)])),
      nodeName: 'a',
      stateDir: dir,
      exec: host.exec,
      resyncIntervalMs: 0,
    });
    expect(tunnel.mode).toBe('userspace');
    const starts = host.calls.filter((c) => c[0] === 'env');
    expect(starts).toEqual([['env', '-u', 'LOG_LEVEL', '-u', 'WG_PROCESS_FOREGROUND', binary, ifname]]);
    expect([...host.peers.keys()]).toEqual([keyB]);
  });

  it('reconciles on every inventory change: new node, changed CIDRs, removed node, own key published', async () => {
    const inv = new Inventory(data([node('a', 1, undefined), node('b', 2, keyB)]));
    tunnel = await startWireguard({
      config: config(),
      inventory: inv,
      nodeName: 'a',
      stateDir: dir,
      exec: host.exec,
      resyncIntervalMs: 0,
    });
    const own = tunnel.publicKey;

    inv.replace(data([node('a', 1, own), node('b', 2, keyB), node('c', 3, keyC)]));
    await vi.waitFor(() => expect([...host.peers.keys()].sort()).toEqual([keyB, keyC].sort()));
    await vi.waitFor(() => expect([...host.routes].sort()).toEqual(['10.5.2.0/24', '10.5.3.0/24']));
    expect((await tunnel.status()).inventoryKey).toBe('match');

    const moved = { ...node('b', 2, keyB), podCIDRs: ['10.5.2.0/25', 'fd05:2::/64'] };
    inv.replace(data([node('a', 1, own), moved]));
    await vi.waitFor(() => expect([...host.peers.keys()]).toEqual([keyB]));
    await vi.waitFor(() => expect([...host.routes].sort()).toEqual(['10.5.2.0/25', 'fd05:2::/64']));
    expect(host.peers.get(keyB)?.allowed).toEqual(['10.5.2.0/25', 'fd05:2::/64']);

    // another key for this node in the inventory is reported, the tunnel keeps its own key
    inv.replace(data([node('a', 1, keyC), moved]));
    await vi.waitFor(async () => expect((await tunnel?.status())?.inventoryKey).toBe('mismatch'));
    expect(host.publicKey).toBe(own);
  });

  it('close() leaves the interface running; a new start adopts it without any write or new key', async () => {
    const inv = new Inventory(data([node('a', 1, undefined), node('b', 2, keyB)]));
    const clock = new FakeClock(1_700_000_000_000);
    const first = await startWireguard({
      config: config(),
      inventory: inv,
      nodeName: 'a',
      stateDir: dir,
      exec: host.exec,
      resyncIntervalMs: 30,
      clock,
    });
    const ifindex = first.ifindex;
    // While open, an inventory change and the resync timer each run a reconcile by the next turn.
    host.calls = [];
    inv.replace(data([node('a', 1, undefined), node('b', 2, keyB)]));
    await settle();
    expect(host.calls.length).toBeGreaterThan(0);
    host.calls = [];
    clock.advance(30);
    await settle();
    expect(host.calls.length).toBeGreaterThan(0);
    await first.close();
    await first.close();
    await expect(first.status()).rejects.toMatchObject({ code: 'MESHAUTH_ERR_CLOSED' });
    expect(host.link).toBeDefined();
    expect([...host.peers.keys()]).toEqual([keyB]);

    // a closed tunnel no longer follows the inventory, and its resync timer is gone
    host.calls = [];
    inv.replace(data([node('a', 1, undefined), node('b', 2, keyB), node('c', 3, keyC)]));
    expect(clock.pending).toBe(0);
    clock.advance(1000);
    await settle();
    expect(host.calls).toEqual([]);

    inv.replace(data([node('a', 1, undefined), node('b', 2, keyB)]));
    tunnel = await startWireguard({
      config: config(),
      inventory: inv,
      nodeName: 'a',
      stateDir: dir,
      exec: host.exec,
      resyncIntervalMs: 0,
    });
    expect(tunnel.publicKey).toBe(first.publicKey);
    expect(tunnel.ifindex).toBe(ifindex);
    expect(host.calls.filter(isWrite)).toEqual([]);

    await tunnel.close({ teardown: true });
    expect(host.link).toBeUndefined();
    tunnel = undefined;
  });

  it('brings back a vanished interface on the resync timer and reports the new ifindex', async () => {
    const inv = new Inventory(data([node('a', 1, undefined), node('b', 2, keyB)]));
    const seen: number[] = [];
    const clock = new FakeClock(1_700_000_000_000);
    tunnel = await startWireguard({
      config: config(),
      inventory: inv,
      nodeName: 'a',
      stateDir: dir,
      exec: host.exec,
      resyncIntervalMs: 30,
      onIfindexChange: (i) => seen.push(i),
      clock,
    });
    const before = tunnel.ifindex;
    expect(seen).toEqual([]);
    // the link goes away with everything on it
    host.link = undefined;
    host.peers.clear();
    host.routes.clear();
    // nothing notices before the resync timer is due
    clock.advance(29);
    await settle();
    expect(seen).toEqual([]);
    clock.advance(1);
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    expect(seen[0]).not.toBe(before);
    expect(tunnel.ifindex).toBe(seen[0]);
    await vi.waitFor(() => expect([...host.peers.keys()]).toEqual([keyB]));
    expect([...host.routes]).toEqual(['10.5.2.0/24']);
  });

  it('honours a configured private key file and refuses to start when disabled', async () => {
    const inv = new Inventory(data([node('a', 1, undefined)]));
    const keyFile = join(dir, 'keys', 'node.key');
    tunnel = await startWireguard({
      config: config({ privateKeyFile: keyFile }),
      inventory: inv,
      nodeName: 'a',
      stateDir: dir,
      exec: host.exec,
      resyncIntervalMs: 0,
    });
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(publicKeyFromPrivate(readFileSync(keyFile, 'utf8').trim())).toBe(tunnel.publicKey);
    expect(host.calls).toContainEqual(['wg', 'set', ifname, 'private-key', keyFile]);

    await expect(
      startWireguard({
        config: config({ enabled: false }),
        inventory: inv,
        nodeName: 'a',
        stateDir: dir,
        exec: new FakeHost().exec,
      }),
    ).rejects.toMatchObject({ code: 'MESHAUTH_ERR_WIREGUARD_CONFIG' });
  });
});
