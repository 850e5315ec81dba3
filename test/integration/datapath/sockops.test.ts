/**
 * The sock_ops program against the real kernel: a client in a cgroup and a network namespace
 * connects to a peer whose pair requires authentication while the tc egress program drops the SYN;
 * a user-space loop writes the auth entry 100 ms after the signal, as the handshake would. With the
 * program attached the retransmitted SYN follows within the shortened RTO; without it the kernel
 * waits its 1 s initial SYN RTO.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuthType,
  Datapath,
  querySockOpsPrograms,
  type AuthKey,
  type AuthSignal,
  type RingBufSignalSource,
} from '../../../src/datapath/index.js';
import { NetnsLab, isPrivileged, run } from '../../helpers/netns.js';
import { openDatapath, openFds, randomPinDir } from './helpers.js';

/** Node one-liner: connect to host:port within ms; prints "ok <elapsed ms>" or "fail <code>". */
const CONNECT = `
const t0 = process.hrtime.bigint();
const s = require('net').connect({ host: process.argv[1], port: Number(process.argv[2]) });
const t = setTimeout(() => { console.log('fail timeout'); process.exit(0); }, Number(process.argv[3]));
s.on('connect', () => { clearTimeout(t); console.log('ok ' + (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)); s.destroy(); process.exit(0); });
s.on('error', (e) => { clearTimeout(t); console.log('fail ' + e.code); process.exit(0); });
`;

const AUTH_DELAY_MS = 100;

describe.skipIf(!isPrivileged())('sock_ops program: short initial SYN RTO for unauthenticated pairs', () => {
  const lab = new NetnsLab('maso');
  const n = 100 + (randomBytes(1)[0]! % 100);
  const CLIENT = `10.${n}.1.1`;
  const SERVER = `10.${n}.1.2`;
  const KEY: AuthKey = { localId: 100, remoteId: 200, remoteNode: 5, authType: AuthType.SpiffeMtls };
  const cgroup = `/sys/fs/cgroup/unified/meshauth-test-${randomBytes(4).toString('hex')}`;
  let pinDir: string;
  let otherPinDir: string;
  let dp: Datapath;
  let other: Datapath | undefined;
  let client: string;
  let fds: number;
  let source: RingBufSignalSource | undefined;
  let reader: Promise<void> | undefined;
  const signals: AuthSignal[] = [];
  /** When set, every signal for KEY schedules the entry write AUTH_DELAY_MS later. */
  let authorize = false;

  /** Starts the signal loop of dp: the stand-in for the auth manager and its handshake. */
  function startSignalLoop(): void {
    source = dp.signals();
    reader = source.run((s) => {
      signals.push(s);
      if (!authorize || s.localId !== KEY.localId || s.remoteId !== KEY.remoteId) return;
      setTimeout(
        () => dp.auth.update({ ...KEY, remoteNode: s.remoteNode }, { expiresAtMs: Date.now() + 60_000 }),
        AUTH_DELAY_MS,
      );
    });
  }

  async function stopSignalLoop(): Promise<void> {
    source?.close();
    await reader;
    source = undefined;
    reader = undefined;
  }

  beforeAll(async () => {
    fds = openFds();
    mkdirSync(cgroup);
    lab.onCleanup(() => {
      if (existsSync(cgroup)) rmdirSync(cgroup);
    });
    client = lab.addNamespace('client');
    const server = lab.addNamespace('server');
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
    otherPinDir = randomPinDir();
    lab.onCleanup(() => Datapath.removePins(pinDir));
    lab.onCleanup(() => Datapath.removePins(otherPinDir));
    dp = openDatapath(pinDir, {
      signalThrottleMs: 250,
      wireguardIfindex: 0,
      strictWireguard: false,
      synRtoMs: 50,
    });
    dp.upsertIpcache({ cidr: `${CLIENT}/32`, identity: 100, nodeId: 0 });
    dp.upsertIpcache({ cidr: `${SERVER}/32`, identity: 200, nodeId: 5 });
    dp.setPolicy({ localId: 100, remoteId: 200 }, AuthType.SpiffeMtls);
    dp.attachTc('eth0', 'egress', 'egress', { netns: client });
    startSignalLoop();
  });

  afterAll(async () => {
    await stopSignalLoop();
    for (const d of [dp, other]) {
      try {
        d?.detachSockOps(cgroup);
      } catch {
        /* cgroup gone or never attached */
      }
      d?.close();
    }
    await lab.cleanup();
    expect(existsSync(cgroup)).toBe(false);
    expect(openFds()).toBe(fds);
  });

  beforeEach(() => {
    dp.auth.delete(KEY);
    dp.clearThrottle();
    authorize = false;
  });

  /** Connects from a process placed in the cgroup (and in the client namespace) before it starts. */
  function connectFromCgroup(timeoutMs: number, inCgroup = true): Promise<string> {
    const enter = inCgroup ? `echo $$ > ${cgroup}/cgroup.procs && ` : '';
    return new Promise((resolve, reject) => {
      const child = spawn(
        'sh',
        [
          '-c',
          `${enter}exec ip netns exec ${client} node -e "$0" "$@"`,
          CONNECT,
          SERVER,
          '8080',
          String(timeoutMs),
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

  /** Connect time in ms of a successful connection (fails the test otherwise). */
  async function connectMs(timeoutMs = 3000, inCgroup = true): Promise<number> {
    const out = await connectFromCgroup(timeoutMs, inCgroup);
    expect(out).toMatch(/^ok /);
    return Number(out.slice(3));
  }

  const shortened = (): bigint => dp.counters().syn_rto_shortened;

  it('validates and stores the SYN RTO settings', () => {
    expect(dp.settings()).toMatchObject({ synRtoMs: 50 });
    expect(dp.settings().kernelHz).toBeGreaterThanOrEqual(24);
    expect(() =>
      dp.setSettings({ signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false, synRtoMs: 0 }),
    ).toThrow(RangeError);
    expect(() =>
      dp.setSettings({ signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false, synRtoMs: 1001 }),
    ).toThrow(/synRtoMs/);
    expect(() =>
      dp.setSettings({ signalThrottleMs: 250, wireguardIfindex: 0, strictWireguard: false, kernelHz: 7 }),
    ).toThrow(/kernelHz/);
    expect(dp.settings()).toMatchObject({ synRtoMs: 50 }); // unchanged by the rejected writes
  });

  it('a cold pair connects right after the entry is written with the program, and after 1 s without it', async () => {
    const attached = dp.attachSockOps(cgroup);
    expect(attached.replaced).toEqual([]);
    expect(dp.sockOpsPrograms(cgroup).map((p) => p.id)).toEqual([attached.programId]);
    expect(dp.sockOpsPrograms(cgroup)[0]!.name).toBe('ma_sockops');

    authorize = true;
    const before = shortened();
    const signalsBefore = signals.length;
    const withProgram = await connectMs();
    expect(shortened() - before).toBe(1n); // one connection, counted once despite retransmissions
    expect(signals.length).toBeGreaterThan(signalsBefore);
    expect(signals[signalsBefore]).toMatchObject({
      localId: 100,
      remoteId: 200,
      remoteNode: 5,
      direction: 'egress',
    });
    expect(withProgram).toBeGreaterThanOrEqual(AUTH_DELAY_MS); // the SYN really was held until the entry existed
    expect(withProgram).toBeLessThan(500);

    expect(dp.detachSockOps(cgroup)).toBe(true);
    expect(dp.sockOpsPrograms(cgroup)).toEqual([]);
    expect(dp.detachSockOps(cgroup)).toBe(false);
    dp.auth.delete(KEY);
    dp.clearThrottle();
    const withoutProgram = await connectMs();
    expect(shortened() - before).toBe(1n);
    expect(withoutProgram).toBeGreaterThanOrEqual(1000);
    console.log(
      `connect time of a cold pair: ${withProgram} ms with the sock_ops program, ${withoutProgram} ms without`,
    );
  });

  it('applies to pairs required by the wildcard "any remote" policy', async () => {
    dp.attachSockOps(cgroup);
    dp.deletePolicy({ localId: 100, remoteId: 200 });
    dp.setPolicy({ localId: 100, remoteId: 0 }, AuthType.SpiffeMtls);
    try {
      authorize = true;
      const before = shortened();
      const ms = await connectMs();
      expect(shortened() - before).toBe(1n);
      expect(ms).toBeGreaterThanOrEqual(AUTH_DELAY_MS);
      expect(ms).toBeLessThan(500);
    } finally {
      dp.deletePolicy({ localId: 100, remoteId: 0 });
      dp.setPolicy({ localId: 100, remoteId: 200 }, AuthType.SpiffeMtls);
    }
  });

  it('leaves the timeout alone for live entries, pairs without policy, permissive pairs, same-node peers and sockets outside the cgroup', async () => {
    dp.attachSockOps(cgroup);
    const before = shortened();
    // live entry
    dp.auth.update(KEY, { expiresAtMs: Date.now() + 60_000 });
    await connectMs(2000);
    // outside the cgroup (the tc program still lets the authenticated pair through)
    await connectMs(2000, false);
    dp.auth.delete(KEY);
    // no policy for the pair
    dp.deletePolicy({ localId: 100, remoteId: 200 });
    try {
      await connectMs(2000);
    } finally {
      dp.setPolicy({ localId: 100, remoteId: 200 }, AuthType.SpiffeMtls);
    }
    // a permissive pair: its SYN passes unauthenticated, so there is nothing to retransmit early
    dp.setPolicy({ localId: 100, remoteId: 200 }, AuthType.SpiffeMtls, 'permissive');
    try {
      await connectMs(2000);
    } finally {
      dp.setPolicy({ localId: 100, remoteId: 200 }, AuthType.SpiffeMtls);
    }
    // peer on this node (node 0): an entry for it lets the tc program pass the SYN
    dp.upsertIpcache({ cidr: `${SERVER}/32`, identity: 200, nodeId: 0 });
    const localKey = { ...KEY, remoteNode: 0 };
    dp.auth.update(localKey, { expiresAtMs: Date.now() + 60_000 });
    try {
      await connectMs(2000);
    } finally {
      dp.auth.delete(localKey);
      dp.upsertIpcache({ cidr: `${SERVER}/32`, identity: 200, nodeId: 5 });
    }
    expect(shortened() - before).toBe(0n);
  });

  it("shares the cgroup with another node's program, and a restart replaces only its own", async () => {
    const first = dp.attachSockOps(cgroup);
    other = openDatapath(otherPinDir, {
      signalThrottleMs: 250,
      wireguardIfindex: 0,
      strictWireguard: false,
      synRtoMs: 1000,
    });
    const second = other.attachSockOps(cgroup);
    expect(querySockOpsPrograms(cgroup).map((p) => p.id)).toEqual([first.programId, second.programId]);
    expect(other.sockOpsPrograms(cgroup).map((p) => p.id)).toEqual([second.programId]);
    // attaching the same program again changes nothing
    expect(other.attachSockOps(cgroup)).toEqual({ programId: second.programId, replaced: [] });

    // restart: a new object over the same pins replaces its predecessor in place
    await stopSignalLoop();
    dp.close();
    dp = openDatapath(pinDir);
    startSignalLoop();
    const again = dp.attachSockOps(cgroup);
    expect(again.replaced).toEqual([first.programId]);
    expect(querySockOpsPrograms(cgroup).map((p) => p.id)).toEqual([again.programId, second.programId]);
    const shown = run('bpftool', ['cgroup', 'show', cgroup]);
    expect(shown.split('\n').filter((l) => l.includes('ma_sockops')).length).toBe(2);

    // the other node's program (which knows none of these addresses) leaves this node's reply alone
    authorize = true;
    const before = shortened();
    const ms = await connectMs();
    expect(shortened() - before).toBe(1n);
    expect(ms).toBeLessThan(500);

    expect(dp.detachSockOps(cgroup)).toBe(true);
    expect(querySockOpsPrograms(cgroup).map((p) => p.id)).toEqual([second.programId]);
    expect(other.detachSockOps(cgroup)).toBe(true);
    expect(querySockOpsPrograms(cgroup)).toEqual([]);
  });
});
