import { readFileSync } from 'node:fs';
import {
  canonicalCidr,
  publicKeyFromPrivate,
  type Exec,
  type ExecResult,
} from '../../../src/wireguard/index.js';

/**
 * An in-memory stand-in for `ip` and `wg` on a host with the WireGuard kernel module (this
 * machine has none, so the kernel branch is exercised here; the userspace branch and the
 * command layer run against the real tools in test/integration/wireguard).
 */
export class FakeHost {
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
    if (file === 'env' && a.some((x) => x.endsWith('wireguard-go'))) {
      this.link = { ifindex: this.nextIfindex++, kind: 'tun', up: false, mtu: 1420 };
      this.port = 40001;
      return ok();
    }
    return fail(`fake host: unexpected command ${cmd}`);
  }
}

/** Commands that change state (anything but show/dump/list). */
export const isWrite = (c: string[]): boolean => !(c.includes('show') || (c[0] === 'ip' && c.includes('-j')));
