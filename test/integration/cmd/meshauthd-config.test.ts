/**
 * meshauthd refuses a bad configuration before it starts anything: exit status 2 and the problem on
 * stderr, naming the setting (src/cmd/meshauthd.ts, src/config). Runs the compiled daemon, as an
 * operator does; none of these configurations gets as far as loading BPF.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig } from '../../../src/config/index.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { Datapath } from '../../../src/datapath/index.js';
import { silentLogger } from '../../../src/log.js';
import { NetnsLab } from '../../helpers/netns.js';
import { OBJECT_PATH } from '../datapath/helpers.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const MESHAUTHD_JS = join(ROOT, 'dist', 'src', 'cmd', 'meshauthd.js');
const execFileP = promisify(execFile);

const dir = mkdtempSync(join(tmpdir(), 'meshauthd-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(() => {
  try {
    execFileSync('npx', ['tsc', '-p', join(import.meta.dirname, 'tsconfig.dist.json')], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch (err) {
    // tsc exits non-zero on type errors elsewhere but still emits; only missing output is fatal
    if (!existsSync(MESHAUTHD_JS)) throw err;
  }
}, 300_000);

const MINIMAL = `node: node-a
datapath:
  attach:
    - { type: tc, interface: eth0, hook: egress }
inventory: { file: inventory.yaml }
policy: { file: policy.yaml }
`;

async function meshauthd(config: string, args: string[] = []): Promise<{ code: number; stderr: string }> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, config);
  try {
    await execFileP(process.execPath, [MESHAUTHD_JS, '--config', file, ...args], {
      env: { PATH: process.env['PATH'] ?? '' },
      timeout: 60_000,
    });
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: (e.stderr ?? '').replaceAll(file, 'FILE') };
  }
}

describe('meshauthd: configuration refused before start (exit 2)', () => {
  it('an API socket other users could connect to', async () => {
    const r = await meshauthd(`${MINIMAL}api: { socketMode: "0666" }\n`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'meshauthd: invalid configuration:\nconfig FILE: api.socketMode: must give other users no access (last digit 0, like "0600" or "0660"): any local user could then call the API',
    );
    expect(r.stderr).toContain('(got "0666")');
    expect(r.stderr).not.toMatch(/failed to start/);
  });

  it('a duration above its bound, saying a bare number is milliseconds', async () => {
    const r = await meshauthd(MINIMAL, ['--handshake-timeout', '600000']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'config flag --handshake-timeout: handshake.timeout: must be between 100ms and 5m (got "600000": a bare number is milliseconds)',
    );
  });

  it('two listeners on one port, as a conflict naming both settings and their origins', async () => {
    const r = await meshauthd(`${MINIMAL}metrics: { listen: "127.0.0.1:4300" }\n`, [
      '--handshake-port',
      '4300',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'config: conflict between metrics.listen (file FILE) and handshake.port (flag --handshake-port): both would listen on TCP port 4300 (addresses 127.0.0.1 and 0.0.0.0 overlap): give each its own port',
    );
  });
});

/** A bpffs pin directory that does not exist yet. */
function pinDirName(): string {
  return `/sys/fs/bpf/meshauth-test-${Math.random().toString(36).slice(2, 10)}`;
}

/** Pinned maps in pinDir (none when the directory does not exist). */
function pins(pinDir: string): string[] {
  return existsSync(pinDir) ? readdirSync(pinDir) : [];
}

/** A TCP port that was free a moment ago. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

const WEB = 'spiffe://demo.local/ns/demo/sa/web';

describe('meshauthd: the node refuses the configuration before the datapath is touched (exit 2)', () => {
  let work: string;
  let pinDir: string;
  let lab: NetnsLab;
  const blockers: Server[] = [];

  beforeEach(() => {
    work = mkdtempSync(join(dir, 'node-'));
    pinDir = pinDirName();
    lab = new NetnsLab('mc');
  });

  afterEach(async () => {
    for (const b of blockers.splice(0)) await new Promise((r) => b.close(r));
    await lab.cleanup();
    Datapath.removePins(pinDir);
    rmSync(pinDir, { recursive: true, force: true });
  });

  /** A complete configuration: files inventory and policy (web may reach `peers`), dev CA, one cgroup. */
  async function nodeConfig(over: {
    attach?: Array<Record<string, string>>;
    peers?: string[];
    handshakePort?: number;
    identity?: Record<string, unknown>;
    inventory?: Record<string, unknown>;
  }): Promise<string> {
    const peers = over.peers ?? ['spiffe://demo.local/ns/demo/sa/api'];
    writeFileSync(
      join(work, 'inventory.yaml'),
      stringify({
        nodes: [
          { name: 'node-a', address: '127.0.0.1', podCIDRs: ['10.10.1.0/24'] },
          { name: 'node-b', address: '127.0.0.2', podCIDRs: ['10.10.2.0/24'] },
        ],
        workloads: [
          { spiffeId: WEB, node: 'node-a', ips: ['10.10.1.10'] },
          ...peers.map((spiffeId, i) => ({ spiffeId, node: 'node-b', ips: [`10.10.2.${10 + i}`] })),
        ],
      }),
    );
    writeFileSync(
      join(work, 'policy.yaml'),
      stringify({ rules: peers.map((to, i) => ({ name: `web-${i}`, from: WEB, to, auth: 'mutual' })) }),
    );
    return stringify({
      node: 'node-a',
      stateDir: join(work, 'state'),
      bpf: { pinDir, object: OBJECT_PATH },
      datapath: { attach: over.attach ?? [{ type: 'cgroup', path: lab.addCgroup('pods'), hook: 'egress' }] },
      handshake: { listen: '127.0.0.1', port: over.handshakePort ?? (await freePort()) },
      identity: over.identity ?? { source: 'dev-ca', devCa: { trustDomain: 'demo.local' } },
      inventory: over.inventory ?? { file: join(work, 'inventory.yaml') },
      policy: { file: join(work, 'policy.yaml') },
      api: { socket: join(work, 'run', 'api.sock') },
      metrics: { listen: '' },
      log: { level: 'silent' },
    });
  }

  /** The pinned policy map as bpftool dumps it. */
  function dumpPolicy(): string[] {
    const out = execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', join(pinDir, 'ma_policy')], {
      encoding: 'utf8',
    });
    return (JSON.parse(out) as Array<{ key: unknown; value: unknown }>)
      .map((e) => JSON.stringify([e.key, e.value]))
      .sort();
  }

  it('missing files, naming each setting, with no pin made', async () => {
    const r = await meshauthd(await nodeConfig({}), [
      '--bpf-object',
      '/nonexistent/x.o',
      '--identity-dev-ca-ca-cert',
      join(work, 'missing', 'ca.crt'),
      '--identity-dev-ca-ca-key',
      join(work, 'missing', 'ca.key'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^meshauthd: invalid configuration:\n/);
    expect(r.stderr).toContain('bpf.object: /nonexistent/x.o: no such file or directory (ENOENT)');
    expect(r.stderr).toContain(
      `identity.devCa.caCert: ${join(work, 'missing', 'ca.crt')}: no such file or directory (ENOENT)\n` +
        `identity.devCa.caKey: ${join(work, 'missing', 'ca.key')}: no such file or directory (ENOENT)\n`,
    );
    expect(existsSync(join(work, 'missing'))).toBe(false);
    expect(r.stderr).not.toMatch(/build:bpf|\n\s+at /);
    expect(pins(pinDir)).toEqual([]);
  });

  it('identity files and a kubeconfig that are missing, each named, with no pin made', async () => {
    const missing = (f: string): string => join(work, 'missing', f);
    const r = await meshauthd(
      await nodeConfig({
        identity: {
          source: 'files',
          files: {
            bundle: missing('bundle.pem'),
            svids: [{ spiffeId: WEB, cert: missing('web.crt'), key: missing('web.key') }],
          },
        },
        inventory: { source: 'kubernetes' },
      }),
      ['--kubernetes-kubeconfig', missing('kubeconfig')],
    );
    expect(r.code).toBe(2);
    for (const [setting, file] of [
      ['identity.files.bundle', 'bundle.pem'],
      ['identity.files.svids[0].cert', 'web.crt'],
      ['identity.files.svids[0].key', 'web.key'],
      ['kubernetes.kubeconfig', 'kubeconfig'],
    ]) {
      expect(r.stderr).toContain(`${setting}: ${missing(file ?? '')}: no such file or directory (ENOENT)\n`);
    }
    expect(pins(pinDir)).toEqual([]);
  });

  it('attach points that do not resolve, leaving the pinned policy of the previous run as it was', async () => {
    // A previous run: its program stays attached and its maps pinned after it stops.
    const firstFile = join(work, 'first.yaml');
    writeFileSync(firstFile, await nodeConfig({}));
    await (await Daemon.start(loadConfig({ file: firstFile, env: {} }), silentLogger())).close();
    const before = dumpPolicy();
    expect(before).toHaveLength(1);
    const missingCgroup = join(lab.addCgroup('gone'), 'missing');
    const r = await meshauthd(
      await nodeConfig({
        peers: ['api', 'db', 'cache'].map((sa) => `spiffe://demo.local/ns/demo/sa/${sa}`),
        attach: [
          { type: 'tc', interface: 'eth9', hook: 'egress' },
          { type: 'cgroup', path: missingCgroup, hook: 'egress' },
        ],
      }),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'datapath.attach[0] (tc interface eth9): no such interface in this network namespace\n' +
        `datapath.attach[1] (cgroup path ${missingCgroup}): no such file or directory (ENOENT)\n`,
    );
    expect(dumpPolicy()).toEqual(before);
  });

  it('a handshake port in use: one line, and a fresh start pins nothing', async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    blockers.push(blocker);
    mkdirSync(join(work, 'run'), { recursive: true });
    const r = await meshauthd(await nodeConfig({ handshakePort: port }));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `meshauthd: invalid configuration:\nhandshake.port: cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)\n(run meshauthd --help for usage)\n`,
    );
    expect(pins(pinDir)).toEqual([]);
  });
});
