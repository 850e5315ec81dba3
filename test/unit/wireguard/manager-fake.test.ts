import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  generatePrivateKey,
  privateKeyPath,
  publicKeyFromPrivate,
  WireguardManager,
} from '../../../src/wireguard/index.js';
import { FakeHost, isWrite } from './fake-host.js';

describe('WireguardManager against a fake kernel-module host', () => {
  let dir: string;
  let host: FakeHost;
  const ifname = `mafake${process.pid % 10000}`;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshauth-wgfake-'));
    host = new FakeHost();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const open = (): Promise<WireguardManager> =>
    WireguardManager.open({ stateDir: dir, interfaceName: ifname, exec: host.exec, address: '10.99.0.1/32' });

  it('uses the kernel module when `ip link add type wireguard` works, without wireguard-go', async () => {
    const m = await open();
    expect(m.mode).toBe('kernel');
    expect(m.created).toBe(true);
    expect(m.pid()).toBeUndefined();
    expect(host.calls.some((c) => c.includes('wireguard-go'))).toBe(false);
    expect(host.publicKey).toBe(m.publicKey);
    expect(host.port).toBe(51820);
    expect(host.link?.up).toBe(true);
    expect(host.addrs).toEqual(['10.99.0.1/32']);
    const priv = readFileSync(privateKeyPath(dir), 'utf8').trim();
    expect(host.calls.flat().some((arg) => arg.includes(priv))).toBe(false);
  });

  it('falls back to wireguard-go without the module, and refuses kernel mode then', async () => {
    host.kernelModule = false;
    const m = await open();
    expect(m.mode).toBe('userspace');
    expect(host.calls).toContainEqual([
      'env',
      '-u',
      'LOG_LEVEL',
      '-u',
      'WG_PROCESS_FOREGROUND',
      'wireguard-go',
      ifname,
    ]);

    const other = new FakeHost();
    other.kernelModule = false;
    await expect(
      WireguardManager.open({ stateDir: dir, interfaceName: ifname, exec: other.exec, mode: 'kernel' }),
    ).rejects.toMatchObject({
      code: 'MESHAUTH_ERR_WIREGUARD_COMMAND',
      output: 'Error: Unknown device type.',
    });
  });

  it('reconciles, then does nothing; restart adopts without re-keying; stale peers go', async () => {
    const k1 = publicKeyFromPrivate(generatePrivateKey());
    const k2 = publicKeyFromPrivate(generatePrivateKey());
    let m = await open();
    const peers = [
      { name: 'b', publicKey: k1, endpoint: '192.168.0.2:51820', allowedIPs: ['10.1.2.0/24', 'fd00:2::/64'] },
      {
        name: 'c',
        publicKey: k2,
        endpoint: '[fd00::3]:51820',
        allowedIPs: ['10.1.3.0/24'],
        persistentKeepaliveSec: 25,
      },
    ];
    const first = await m.reconcile(peers);
    expect(first.changed).toBe(true);
    expect([...host.routes].sort()).toEqual(['10.1.2.0/24', '10.1.3.0/24', 'fd00:2::/64']);
    // the peer without keepalive was nudged into a handshake, then left with keepalive off
    expect(host.calls).toContainEqual(['wg', 'set', ifname, 'peer', k1, 'persistent-keepalive', '1']);
    expect(host.peers.get(k1)?.keepalive).toBe(0);
    expect(host.peers.get(k2)?.keepalive).toBe(25);

    host.calls = [];
    expect((await m.reconcile(peers)).changed).toBe(false);
    expect(host.calls.filter(isWrite)).toEqual([]);

    await m.close();
    host.calls = [];
    m = await open();
    expect(m.created).toBe(false);
    expect(host.calls.filter(isWrite)).toEqual([]);

    const res = await m.reconcile(peers.slice(0, 1));
    expect(res.plan.peers).toEqual([{ kind: 'remove', publicKey: k2 }]);
    expect([...host.peers.keys()]).toEqual([k1]);
    expect([...host.routes].sort()).toEqual(['10.1.2.0/24', 'fd00:2::/64']);
    const st = await m.status();
    expect(st.mode).toBe('kernel');
    expect(st.peers[0]?.name).toBe('b');
    await m.destroy();
    expect(host.link).toBeUndefined();
    await expect(m.reconcile(peers)).rejects.toMatchObject({ code: 'MESHAUTH_ERR_CLOSED' });
  });

  it('re-keys an adopted interface that carries another key', async () => {
    const m = await open();
    await m.close();
    host.publicKey = publicKeyFromPrivate(generatePrivateKey());
    host.calls = [];
    const again = await open();
    expect(host.calls).toContainEqual(['wg', 'set', ifname, 'private-key', privateKeyPath(dir)]);
    expect(host.publicKey).toBe(again.publicKey);
  });

  it('refuses an existing interface of another kind', async () => {
    host.link = { ifindex: 3, kind: 'veth', up: true, mtu: 1500 };
    await expect(open()).rejects.toMatchObject({ code: 'MESHAUTH_ERR_WIREGUARD_INTERFACE_CONFLICT' });
  });
});
