import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  canonicalCidr,
  generatePrivateKey,
  privateKeyPath,
  publicKeyFromPrivate,
  WireguardManager,
  type Exec,
  type ExecResult,
} from '../../../src/wireguard/index.js';

/**
 * An in-memory stand-in for `ip` and `wg` on a host with the WireGuard kernel module (this
 * machine has none, so the kernel branch is exercised here; the userspace branch and the
 * command layer run against the real tools in test/integration/wireguard).
 */
class FakeHost {
  kernelModule = true;
  link: { ifindex: number; kind: string; up: boolean; mtu: number } | undefined;
  publicKey: string | undefined;
  port = 0;
  peers = new Map<string, { endpoint: string; allowed: string[]; keepalive: number }>();
  routes = new Set<string>();
  addrs: string[] = [];
  calls: string[][] = [];
  private nextIfindex = 10;

  exec: Exec = (file, args) => Promise.resolve(this.run(file, [...args]));

  private run(file: string, a: string[]): ExecResult {
    this.calls.push([file, ...a]);
    const ok = (stdout = ''): ExecResult => ({ code: 0, stdout, stderr: '' });
    const fail = (stderr: string): ExecResult => ({ code: 1, stdout: '', stderr });
    const cmd = [file, ...a].join(' ');
    if (file === 'ip') {
      if (a[0] === '-j' && a[1] === '-d' && a[2] === 'link') {
        if (this.link === undefined) return fail(`Device "${a[5]}" does not exist.`);
        const l = this.link;
        return ok(
          JSON.stringify([
            { ifindex: l.ifindex, flags: l.up ? ['UP'] : [], mtu: l.mtu, linkinfo: { info_kind: l.kind } },
          ]),
        );
      }
      if (a[0] === 'link' && a[1] === 'add') {
        if (!this.kernelModule) return fail('Error: Unknown device type.');
        this.link = { ifindex: this.nextIfindex++, kind: 'wireguard', up: false, mtu: 1420 };
        this.port = 40000;
        return ok();
      }
      if (a[0] === 'link' && a[1] === 'del') {
        this.link = undefined;
        this.peers.clear();
        this.routes.clear();
        return ok();
      }
      if (a[0] === 'link' && a[1] === 'set' && this.link !== undefined) {
        if (a[4] === 'up') this.link.up = true;
        if (a[4] === 'mtu') this.link.mtu = Number(a[5]);
        return ok();
      }
      if (a[0] === '-j' && a[1] === 'addr') {
        return ok(
          JSON.stringify([
            {
              addr_info: this.addrs.map((x) => ({
                local: x.split('/')[0],
                prefixlen: Number(x.split('/')[1]),
              })),
            },
          ]),
        );
      }
      if (a[0] === 'addr' && a[1] === 'replace') {
        this.addrs.push(a[2] ?? '');
        return ok();
      }
      if ((a[0] === '-4' || a[0] === '-6') && a[2] === 'route') {
        const v6 = a[0] === '-6';
        return ok(
          JSON.stringify([...this.routes].filter((r) => r.includes(':') === v6).map((dst) => ({ dst }))),
        );
      }
      if (a[0] === 'route' && a[1] === 'replace') {
        this.routes.add(canonicalCidr(a[2] ?? ''));
        return ok();
      }
      if (a[0] === 'route' && a[1] === 'del') {
        return this.routes.delete(canonicalCidr(a[2] ?? ''))
          ? ok()
          : fail('RTNETLINK answers: No such process');
      }
    }
    if (file === 'wg' && this.link !== undefined) {
      if (a[0] === 'show' && a[2] === 'dump') {
        const lines = [
          `${this.publicKey === undefined ? '(none)' : '(hidden)'}\t${this.publicKey ?? '(none)'}\t${this.port}\toff`,
        ];
        for (const [pk, p] of this.peers) {
          lines.push(
            `${pk}\t(none)\t${p.endpoint}\t${p.allowed.join(',') || '(none)'}\t0\t0\t0\t${p.keepalive === 0 ? 'off' : p.keepalive}`,
          );
        }
        return ok(`${lines.join('\n')}\n`);
      }
      if (a[0] === 'set') {
        const rest = a.slice(2);
        while (rest.length > 0) {
          const k = rest.shift();
          if (k === 'private-key')
            this.publicKey = publicKeyFromPrivate(readFileSync(rest.shift() ?? '', 'utf8').trim());
          else if (k === 'listen-port') this.port = Number(rest.shift());
          else if (k === 'peer') {
            const pk = rest.shift() ?? '';
            if (rest[0] === 'remove') {
              rest.shift();
              this.peers.delete(pk);
              continue;
            }
            const p = this.peers.get(pk) ?? { endpoint: '(none)', allowed: [], keepalive: 0 };
            this.peers.set(pk, p);
            while (rest.length > 0 && rest[0] !== 'peer') {
              const f = rest.shift();
              const v = rest.shift() ?? '';
              if (f === 'endpoint') p.endpoint = v;
              if (f === 'allowed-ips') p.allowed = v === '' ? [] : v.split(',');
              if (f === 'persistent-keepalive') p.keepalive = v === 'off' ? 0 : Number(v);
            }
          } else return fail(`unsupported ${cmd}`);
        }
        return ok();
      }
    }
    if (file === 'wg') return fail('Unable to access interface: No such device');
    if (file === 'env' && a.includes('wireguard-go')) {
      this.link = { ifindex: this.nextIfindex++, kind: 'tun', up: false, mtu: 1420 };
      this.port = 40001;
      return ok();
    }
    return fail(`fake host: unexpected command ${cmd}`);
  }
}

const isWrite = (c: string[]): boolean => !(c.includes('show') || (c[0] === 'ip' && c.includes('-j')));

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
