/**
 * Daemon.start against the real datapath (BPF maps pinned in bpffs, a cgroup attachment), the
 * SQLite audit trail with its writer thread, the dev CA and real sockets: when a late step fails,
 * everything opened before it is closed again (no fd, listening socket, watcher or child process
 * left) while the pinned maps stay, as they do on a graceful stop.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditStore } from '../../../src/audit/index.js';
import { ConfigError, loadConfig, type DaemonConfig } from '../../../src/config/index.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { preflight } from '../../../src/daemon/preflight.js';
import { silentLogger } from '../../../src/log.js';
import { API, DaemonTestNode, type AttachSetting } from '../../helpers/daemon-node.js';
import { freePort } from '../../helpers/ports.js';

let node: DaemonTestNode;

beforeEach(() => {
  node = new DaemonTestNode({ prefix: 'meshauth-daemon-', labPrefix: 'du' });
});

afterEach(() => node.cleanup());

/** Whether a TCP listener can be opened on 127.0.0.1:port (nobody holds it). */
async function canListen(port: number): Promise<boolean> {
  const s = createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Open fds of this process that point into the test's directory or at BPF objects. */
function daemonFds(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed while listing
    }
    if (target.startsWith(node.dir) || target.startsWith(node.pinDir) || /^anon_inode:bpf/.test(target))
      out.push(target);
  }
  return out.sort();
}

/** Processes whose parent is this one. */
function children(): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid) out.push(Number(p));
    } catch {
      /* exited */
    }
  }
  return out;
}

/** Handles (servers, watchers, timers) and requests the event loop holds, by kind. */
function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

async function writeConfig(over: {
  handshakePort: number;
  metricsPort: number;
  apiSocket?: string;
  attach?: AttachSetting[];
  /** Workloads of node-b that web may reach (mutual auth); default [API]. */
  peers?: string[];
}) {
  const peers = over.peers ?? [API];
  const identity = await node.devCaIdentity();
  node.writeInventory(peers);
  node.writeMutualPolicy(peers);
  const file = node.writeConfig(
    node.config(over, {
      auth: { gcInterval: '1s', preauthenticate: true },
      identity,
      audit: { path: join(node.dir, 'state', 'audit.db') },
      api: { socket: over.apiSocket ?? join(node.dir, 'run', 'api.sock') },
      metrics: { listen: `127.0.0.1:${over.metricsPort}` },
      log: { level: 'silent' },
    }),
  );
  return loadConfig({ file, env: {} });
}

/** What must hold after a failed start or a stop: nothing of the daemon is left open. */
async function expectNothingLeft(
  config: DaemonConfig,
  before: { resources: Record<string, number>; children: number[] },
  ports: number[],
  pins: 'kept' | 'none' = 'kept',
) {
  expect(daemonFds()).toEqual([]);
  // Unix socket servers, file watchers and timers; TCP listeners are checked by listening on their ports.
  const after = activeResources();
  for (const kind of ['PipeServerWrap', 'FSEventWrap', 'StatWatcher', 'Timeout']) {
    expect(after[kind] ?? 0, kind).toBeLessThanOrEqual(before.resources[kind] ?? 0);
  }
  for (const port of ports) expect(await canListen(port)).toBe(true);
  expect(children()).toEqual(before.children);
  if (pins === 'kept') {
    // As designed, the maps stay pinned (enforcement continues with what was earned).
    expect(readdirSync(node.pinDir).sort()).toEqual(
      expect.arrayContaining(['ma_auth', 'ma_ipcache', 'ma_policy']),
    );
  } else {
    // A first start that attached nothing leaves no maps pinned (and removes the empty directory).
    expect(existsSync(node.pinDir) ? readdirSync(node.pinDir) : []).toEqual([]);
  }
  // The audit trail was closed cleanly: it opens again and its hash chain verifies.
  const store = AuditStore.open({ path: config.audit.path });
  try {
    expect(store.verifyChain().ok).toBe(true);
  } finally {
    store.close();
  }
}

/** Program ids bpftool lists on a cgroup directory. */
function cgroupPrograms(path: string): number[] {
  const out = execFileSync('bpftool', ['-j', 'cgroup', 'show', path], { encoding: 'utf8' }).trim();
  return out ? (JSON.parse(out) as Array<{ id: number }>).map((p) => p.id).sort() : [];
}

const API2 = 'spiffe://demo.local/ns/demo/sa/api2';
const API3 = 'spiffe://demo.local/ns/demo/sa/api3';

describe('Daemon.start', () => {
  it('refuses a taken handshake port before it pins or attaches anything', async () => {
    const [handshakePort, metricsPort] = [await freePort(), await freePort()];
    const config = await writeConfig({ handshakePort, metricsPort });
    await node.occupy(handshakePort);
    const before = { resources: activeResources(), children: children() };
    const err = await Daemon.start(config, silentLogger()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(
      `handshake.port: cannot listen on 127.0.0.1:${handshakePort}: address already in use (EADDRINUSE)`,
    );
    await expectNothingLeft(config, before, [metricsPort], 'none');
    expect(cgroupPrograms((config.datapath.attach[0] as { path: string }).path)).toEqual([]);
  });

  it('detaches and unpins what a first start made when its last step (API) fails', async () => {
    const [handshakePort, metricsPort] = [await freePort(), await freePort()];
    // The API socket's directory cannot be created: a file is in the way.
    mkdirSync(join(node.dir, 'run'));
    writeFileSync(join(node.dir, 'run', 'not-a-dir'), '');
    const config = await writeConfig({
      handshakePort,
      metricsPort,
      apiSocket: join(node.dir, 'run', 'not-a-dir', 'api.sock'),
    });
    const before = { resources: activeResources(), children: children() };
    await expect(Daemon.start(config, silentLogger())).rejects.toThrow();
    await expectNothingLeft(config, before, [handshakePort, metricsPort], 'none');
    expect(cgroupPrograms((config.datapath.attach[0] as { path: string }).path)).toEqual([]);
  });

  it('writes back the policy a restart found when its last step (API) fails', async () => {
    const [handshakePort, metricsPort] = [await freePort(), await freePort()];
    const good = await writeConfig({ handshakePort, metricsPort });
    await (await Daemon.start(good, silentLogger())).close();
    const policyBefore = node.dumpPolicy();
    expect(policyBefore).toHaveLength(1);
    const cgroup = (good.datapath.attach[0] as { path: string }).path;
    const programsBefore = cgroupPrograms(cgroup);
    expect(programsBefore).toHaveLength(1);
    mkdirSync(join(node.dir, 'run'), { recursive: true });
    writeFileSync(join(node.dir, 'run', 'not-a-dir'), '');
    const config = await writeConfig({
      handshakePort,
      metricsPort,
      peers: [API, API2, API3],
      attach: [{ type: 'cgroup', path: cgroup, hook: 'egress' }],
      apiSocket: join(node.dir, 'run', 'not-a-dir', 'api.sock'),
    });
    const before = { resources: activeResources(), children: children() };
    await expect(Daemon.start(config, silentLogger())).rejects.toThrow();
    await expectNothingLeft(config, before, [handshakePort, metricsPort], 'kept');
    expect(node.dumpPolicy()).toEqual(policyBefore);
    // This start's program took the previous one's place on the same pinned maps.
    expect(cgroupPrograms(cgroup)).toHaveLength(1);
  });

  it('leaves the same nothing behind after a start and a graceful stop', async () => {
    const [handshakePort, metricsPort] = [await freePort(), await freePort()];
    const config = await writeConfig({ handshakePort, metricsPort });
    const before = { resources: activeResources(), children: children() };
    const daemon = await Daemon.start(config, silentLogger());
    expect(await canListen(handshakePort)).toBe(false);
    expect(await canListen(metricsPort)).toBe(false);
    expect(daemonFds().length).toBeGreaterThan(0);
    await daemon.close();
    await expectNothingLeft(config, before, [handshakePort, metricsPort]);
  });

  it('names the attach setting and pins nothing when a first start cannot attach', async () => {
    const [handshakePort, metricsPort] = [await freePort(), await freePort()];
    const config = await writeConfig({
      handshakePort,
      metricsPort,
      attach: [{ type: 'tc', interface: 'nosuch0', hook: 'egress' }],
    });
    const before = { resources: activeResources(), children: children() };
    const err = await Daemon.start(config, silentLogger()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(
      'datapath.attach[0] (tc interface nosuch0): no such interface in this network namespace',
    );
    await expectNothingLeft(config, before, [handshakePort, metricsPort], 'none');
  });

  it('regression: a stateDir that cannot be made is a configuration error naming it (it hung under /proc)', async () => {
    const [handshakePort, metricsPort] = [await freePort(), await freePort()];
    const config = await writeConfig({ handshakePort, metricsPort });
    // before: Node's recursive mkdir looped for ever on /proc/1 (ENOENT from a parent that exists)
    for (const [stateDir, why] of [
      ['/proc/1/meshauth-state', 'no such file or directory (ENOENT)'],
      [join(config.inventory.file!, 'state'), 'a path component is not a directory (ENOTDIR)'],
    ] as const) {
      await expect(preflight({ ...config, stateDir })).rejects.toThrow(
        new ConfigError([`stateDir: ${stateDir}: cannot create it: ${why}`]),
      );
    }
  });

  it('does not ask for the WireGuard interface it creates itself to exist before start', async () => {
    const [handshakePort, metricsPort] = [await freePort(), await freePort()];
    const config = await writeConfig({
      handshakePort,
      metricsPort,
      attach: [{ type: 'tc', interface: 'wgnotyet0', hook: 'egress' }],
    });
    const withWireguard: DaemonConfig = {
      ...config,
      wireguard: { ...config.wireguard, enabled: true, interface: 'wgnotyet0' },
    };
    await expect(preflight(withWireguard)).resolves.toBeUndefined();
    // Any other missing interface is still refused, WireGuard or not.
    await expect(
      preflight({ ...withWireguard, wireguard: { ...withWireguard.wireguard, interface: 'wgother0' } }),
    ).rejects.toThrow(
      'datapath.attach[0] (tc interface wgnotyet0): no such interface in this network namespace',
    );
  });

  it('keeps the pins of an earlier run when a restart cannot attach', async () => {
    const [handshakePort, metricsPort] = [await freePort(), await freePort()];
    const good = await writeConfig({ handshakePort, metricsPort });
    await (await Daemon.start(good, silentLogger())).close();
    const policyBefore = node.dumpPolicy();
    expect(policyBefore).toHaveLength(1);
    // More rules than the running enforcement has, and attach points that cannot be resolved.
    const config = await writeConfig({
      handshakePort,
      metricsPort,
      peers: [API, API2, API3],
      attach: [
        { type: 'tc', interface: 'nosuch0', hook: 'egress' },
        { type: 'cgroup', path: join(node.dir, 'no-such-cgroup'), hook: 'egress' },
        { type: 'cgroup', path: node.dir, hook: 'egress' },
      ],
    });
    const before = { resources: activeResources(), children: children() };
    await expect(Daemon.start(config, silentLogger())).rejects.toThrow(
      [
        'datapath.attach[0] (tc interface nosuch0): no such interface in this network namespace',
        `datapath.attach[1] (cgroup path ${join(node.dir, 'no-such-cgroup')}): no such file or directory (ENOENT)`,
        `datapath.attach[2] (cgroup path ${node.dir}): not a cgroup v2 directory`,
      ].join('\n'),
    );
    await expectNothingLeft(config, before, [handshakePort, metricsPort], 'kept');
    expect(node.dumpPolicy()).toEqual(policyBefore);
  });
});
