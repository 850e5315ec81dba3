/**
 * meshauthd refuses a bad configuration before it starts anything: exit status 2 and the problem on
 * stderr, naming the setting (src/cmd/meshauthd.ts, src/config). Runs the compiled daemon, as an
 * operator does; none of these configurations gets as far as loading BPF.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig } from '../../../src/config/index.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { silentLogger } from '../../../src/log.js';
import { API, DaemonTestNode, WEB, type AttachSetting } from '../../helpers/daemon-node.js';
import { freePort } from '../../helpers/ports.js';

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

/** Pinned maps in pinDir (none when the directory does not exist). */
function pins(pinDir: string): string[] {
  return existsSync(pinDir) ? readdirSync(pinDir) : [];
}

describe('meshauthd: the node refuses the configuration before the datapath is touched (exit 2)', () => {
  let node: DaemonTestNode;

  beforeEach(() => {
    // The pin directory does not exist yet: the daemon would have to make it.
    node = new DaemonTestNode({ prefix: 'node-', parent: dir, labPrefix: 'mc', makePinDir: false });
  });

  afterEach(() => node.cleanup());

  /** A complete configuration: files inventory and policy (web may reach `peers`), dev CA, one cgroup. */
  async function nodeConfig(over: {
    attach?: AttachSetting[];
    peers?: string[];
    handshakePort?: number;
    identity?: Record<string, unknown>;
    inventory?: Record<string, unknown>;
  }): Promise<string> {
    const peers = over.peers ?? [API];
    node.writeInventory(peers);
    node.writeMutualPolicy(peers);
    return stringify(
      node.config(
        { handshakePort: over.handshakePort ?? (await freePort()), attach: over.attach },
        {
          identity: over.identity ?? { source: 'dev-ca', devCa: { trustDomain: 'demo.local' } },
          ...(over.inventory ? { inventory: over.inventory } : {}),
          metrics: { listen: '' },
          log: { level: 'silent' },
        },
      ),
    );
  }

  it('missing files, naming each setting, with no pin made', async () => {
    const r = await meshauthd(await nodeConfig({}), [
      '--bpf-object',
      '/nonexistent/x.o',
      '--identity-dev-ca-ca-cert',
      join(node.dir, 'missing', 'ca.crt'),
      '--identity-dev-ca-ca-key',
      join(node.dir, 'missing', 'ca.key'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^meshauthd: invalid configuration:\n/);
    expect(r.stderr).toContain('bpf.object: /nonexistent/x.o: no such file or directory (ENOENT)');
    expect(r.stderr).toContain(
      `identity.devCa.caCert: ${join(node.dir, 'missing', 'ca.crt')}: no such file or directory (ENOENT)\n` +
        `identity.devCa.caKey: ${join(node.dir, 'missing', 'ca.key')}: no such file or directory (ENOENT)\n`,
    );
    expect(existsSync(join(node.dir, 'missing'))).toBe(false);
    expect(r.stderr).not.toMatch(/build:bpf|\n\s+at /);
    expect(pins(node.pinDir)).toEqual([]);
  });

  it('identity files and a kubeconfig that are missing, each named, with no pin made', async () => {
    const missing = (f: string): string => join(node.dir, 'missing', f);
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
    expect(pins(node.pinDir)).toEqual([]);
  });

  it('attach points that do not resolve, leaving the pinned policy of the previous run as it was', async () => {
    // A previous run: its program stays attached and its maps pinned after it stops.
    const firstFile = join(node.dir, 'first.yaml');
    writeFileSync(firstFile, await nodeConfig({}));
    await (await Daemon.start(loadConfig({ file: firstFile, env: {} }), silentLogger())).close();
    const before = node.dumpPolicy();
    expect(before).toHaveLength(1);
    const missingCgroup = join(node.lab.addCgroup('gone'), 'missing');
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
    expect(node.dumpPolicy()).toEqual(before);
  });

  it('a handshake port in use: one line, and a fresh start pins nothing', async () => {
    const port = await freePort();
    await node.occupy(port);
    mkdirSync(join(node.dir, 'run'), { recursive: true });
    const r = await meshauthd(await nodeConfig({ handshakePort: port }));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `meshauthd: invalid configuration:\nhandshake.port: cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)\n(run meshauthd --help for usage)\n`,
    );
    expect(pins(node.pinDir)).toEqual([]);
  });
});
