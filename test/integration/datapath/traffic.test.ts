/**
 * Real traffic: the tc and cgroup programs attached to real hooks, TCP connections between network
 * namespaces (tc) and between processes of a cgroup (cgroup_skb), blocked until an auth entry exists.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmdirSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthType, Datapath, queryTcProgram, type AuthSignal } from '../../../src/datapath/index.js';
import { NetnsLab, isPrivileged, run } from '../../helpers/netns.js';
import { openDatapath, openFds, randomPinDir } from './helpers.js';

/** Node one-liner: connect to host:port within ms; prints "ok" or "fail <code>". */
const CONNECT = `
const s = require('net').connect({ host: process.argv[1], port: Number(process.argv[2]), localAddress: process.argv[4] || undefined });
const t = setTimeout(() => { console.log('fail timeout'); process.exit(0); }, Number(process.argv[3]));
s.on('connect', () => { clearTimeout(t); console.log('ok'); s.destroy(); process.exit(0); });
s.on('error', (e) => { clearTimeout(t); console.log('fail ' + e.code); process.exit(0); });
`;

function collect(dp: Datapath): { signals: AuthSignal[]; stop: () => Promise<void> } {
  const src = dp.signals();
  const signals: AuthSignal[] = [];
  const done = src.run((s) => signals.push(s));
  return {
    signals,
    stop: async () => {
      src.close();
      await done;
    },
  };
}

describe.skipIf(!isPrivileged())('tc programs on a veth between two namespaces', () => {
  const lab = new NetnsLab('madp');
  const n = 100 + (randomBytes(1)[0]! % 100);
  const CLIENT = `10.${n}.0.1`;
  const SERVER = `10.${n}.0.2`;
  let pinDir: string;
  let dp: Datapath;
  let client: string;
  let server: string;
  let fds: number;

  beforeAll(async () => {
    fds = openFds();
    client = lab.addNamespace('client');
    server = lab.addNamespace('server');
    lab.link(
      { ns: client, ifname: 'eth0', addr: `${CLIENT}/24` },
      { ns: server, ifname: 'eth0', addr: `${SERVER}/24` },
    );
    const srv = lab.spawn(server, 'node', [
      '-e',
      `require('net').createServer((c) => c.end()).listen(8080, '${SERVER}', () => console.log('listening'))`,
    ]);
    await new Promise<void>((resolve, reject) => {
      srv.stdout?.once('data', () => resolve());
      srv.once('exit', (code) => reject(new Error(`server exited ${code}`)));
    });
    pinDir = randomPinDir();
    lab.onCleanup(() => Datapath.removePins(pinDir));
    dp = openDatapath(pinDir, { signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false });
    dp.upsertIpcache({ cidr: `${CLIENT}/32`, identity: 100, nodeId: 0 });
    dp.upsertIpcache({ cidr: `${SERVER}/32`, identity: 200, nodeId: 5 });
    dp.setPolicy({ localId: 100, remoteId: 200 }, AuthType.SpiffeMtls);
  });

  afterAll(async () => {
    dp?.close();
    await lab.cleanup();
    expect(openFds()).toBe(fds);
  });

  const connect = (ms: number): string =>
    lab.exec(client, 'node', ['-e', CONNECT, SERVER, '8080', String(ms)]).trim();

  it('connects before anything is attached', () => {
    expect(connect(2000)).toBe('ok');
  });

  it('drops the SYN while there is no entry, signals, and lets the connection through after the entry is written', async () => {
    dp.attachTc('eth0', 'egress', 'egress', { netns: client });
    const firstId = dp.tcProgramId('eth0', 'egress', { netns: client });
    expect(firstId).toBeGreaterThan(0);
    const sig = collect(dp);
    try {
      expect(connect(1500)).toBe('fail timeout');
      const c = dp.counters();
      expect(c.drop_auth_missing).toBeGreaterThanOrEqual(1n);
      expect(c.signal_sent).toBeGreaterThanOrEqual(1n);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await sig.stop();
    }
    expect(sig.signals.length).toBeGreaterThanOrEqual(1);
    expect(sig.signals[0]).toMatchObject({
      localId: 100,
      remoteId: 200,
      remoteNode: 5,
      authType: 1,
      direction: 'egress',
    });

    dp.auth.update(
      { localId: 100, remoteId: 200, remoteNode: 5, authType: 1 },
      { expiresAtMs: Date.now() + 60_000 },
    );
    expect(connect(2000)).toBe('ok');
    expect(dp.counters().pass_authenticated).toBeGreaterThanOrEqual(2n); // SYN + ACK at least
  });

  it('keeps enforcing after close(), and a restart replaces the filter instead of adding one', () => {
    const before = dp.tcProgramId('eth0', 'egress', { netns: client });
    dp.close();
    expect(queryTcProgram({ ifname: 'eth0', hook: 'egress', netns: client })).toBe(before);
    dp = openDatapath(pinDir);
    dp.attachTc('eth0', 'egress', 'egress', { netns: client });
    const after = dp.tcProgramId('eth0', 'egress', { netns: client });
    expect(after).not.toBe(before);
    const filters = lab.exec(client, 'tc', ['filter', 'show', 'dev', 'eth0', 'egress']);
    expect(filters.split('\n').filter((l) => l.includes('handle 0x4d41')).length).toBe(1);
    expect(filters).toContain('meshauth_tc_egr'); // the kernel keeps 15 characters of the name
    // the entry written before the restart still lets traffic through
    expect(connect(2000)).toBe('ok');
    dp.auth.delete({ localId: 100, remoteId: 200, remoteNode: 5, authType: 1 });
    expect(connect(1200)).toBe('fail timeout');
  });

  it('detaches', () => {
    expect(dp.detachTc('eth0', 'egress', { netns: client })).toBe(true);
    expect(dp.tcProgramId('eth0', 'egress', { netns: client })).toBeUndefined();
    expect(dp.detachTc('eth0', 'egress', { netns: client })).toBe(false);
    expect(connect(2000)).toBe('ok');
  });
});

describe.skipIf(!isPrivileged())('cgroup_skb programs on a cgroup v2 directory', () => {
  const CG_ROOT = '/sys/fs/cgroup/unified';
  const cgroup = `${CG_ROOT}/meshauth-test-${randomBytes(4).toString('hex')}`;
  const CLIENT = '127.0.0.2';
  const SERVER = '127.0.0.3';
  let pinDir: string;
  let dp: Datapath;
  let srv: Server;
  let port = 0;

  beforeAll(async () => {
    mkdirSync(cgroup);
    srv = createServer((c) => c.end());
    await new Promise<void>((r) => srv.listen(0, SERVER, () => r()));
    port = (srv.address() as { port: number }).port;
    pinDir = randomPinDir();
    dp = openDatapath(pinDir, { signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false });
    dp.upsertIpcache({ cidr: `${CLIENT}/32`, identity: 100, nodeId: 0 });
    dp.upsertIpcache({ cidr: `${SERVER}/32`, identity: 200, nodeId: 7 });
    dp.setPolicy({ localId: 100, remoteId: 200 }, AuthType.SpiffeMtls);
  });

  afterAll(async () => {
    try {
      dp?.detachCgroup(cgroup, 'egress');
    } catch {
      /* not attached */
    }
    dp?.close();
    if (pinDir) Datapath.removePins(pinDir);
    await new Promise<void>((r) => (srv ? srv.close(() => r()) : r()));
    if (existsSync(cgroup)) rmdirSync(cgroup);
  });

  /** Runs the connect one-liner as a process inside the cgroup. */
  function connectFromCgroup(ms: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        'sh',
        [
          '-c',
          `echo $$ > ${cgroup}/cgroup.procs && exec node -e "$0" "$@"`,
          CONNECT,
          SERVER,
          String(port),
          String(ms),
          CLIENT,
        ],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('exit', (code) =>
        code === 0 ? resolve(out.trim()) : reject(new Error(`connect exited ${code}: ${err}`)),
      );
    });
  }

  it('blocks a required pair from inside the cgroup until the entry exists', async () => {
    expect(await connectFromCgroup(2000)).toBe('ok');
    dp.attachCgroup(cgroup, 'egress');
    const sig = collect(dp);
    try {
      expect(await connectFromCgroup(1200)).toMatch(/^fail/);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await sig.stop();
    }
    expect(sig.signals[0]).toMatchObject({ localId: 100, remoteId: 200, remoteNode: 7, direction: 'egress' });
    dp.auth.update(
      { localId: 100, remoteId: 200, remoteNode: 7, authType: 1 },
      { expiresAtMs: Date.now() + 60_000 },
    );
    expect(await connectFromCgroup(2000)).toBe('ok');
    // a process outside the cgroup was never affected
    expect(run('node', ['-e', CONNECT, SERVER, String(port), '2000', CLIENT]).trim()).toBe('ok');
  });

  it('re-attaching replaces the program, and detach removes it', async () => {
    dp.auth.delete({ localId: 100, remoteId: 200, remoteNode: 7, authType: 1 });
    dp.close();
    dp = openDatapath(pinDir);
    dp.attachCgroup(cgroup, 'egress'); // replaces the previous object's program
    const progs = run('bpftool', ['cgroup', 'show', cgroup]);
    expect(progs.split('\n').filter((l) => l.includes('ma_cgrp_egress')).length).toBe(1);
    expect(await connectFromCgroup(1200)).toMatch(/^fail/);
    expect(dp.detachCgroup(cgroup, 'egress')).toBe(true);
    expect(await connectFromCgroup(2000)).toBe('ok');
  });
});
