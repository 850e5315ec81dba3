/**
 * The meshauth-relay binary as an operator runs it: flags, its SVID files, a node list file; usage
 * errors exit 2, and a running relay answers for its node and stops cleanly on SIGTERM.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, startApiServer, type ApiServer } from '../../../src/api/index.js';
import { AuditStore } from '../../../src/audit/index.js';
import { DevCa } from '../../../src/identity/index.js';
import { FakeDaemon } from '../api/fake-daemon.js';
import { freePort } from '../../helpers/ports.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const BIN = join(ROOT, 'bin', 'meshauth-relay.js');
const TD = 'cluster.test';
const RELAY = `spiffe://${TD}/meshauth/relay`;
const ADMIN = `spiffe://${TD}/ops/admin`;

let dir: string;
let ca: DevCa;
let store: AuditStore;
let node: ApiServer;

/**
 * Runs the relay with `args` and expects it to refuse to start on a configuration error: exit 2,
 * one line on stderr ("could not start", matching `message`), no stack trace, nothing on stdout
 * (no log line repeating it).
 */
function expectRefusedToStart(args: string[], message: RegExp): void {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/^meshauth-relay: could not start: /m);
  expect(r.stderr).toMatch(message);
  expect(r.stderr + r.stdout).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe('');
  expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
}

beforeAll(async () => {
  try {
    execFileSync('npx', ['tsc', '-p', join(import.meta.dirname, 'tsconfig.dist.json')], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch {
    // type errors elsewhere do not stop the emit; a missing output does (checked below)
  }
  if (!existsSync(join(ROOT, 'dist', 'src', 'relay', 'main.js')))
    throw new Error('dist/src/relay/main.js was not built');
  dir = mkdtempSync(join(tmpdir(), 'meshauth-relay-bin-'));
  ca = await DevCa.create(TD);
  writeFileSync(join(dir, 'ca.pem'), ca.caPem);
  const r = await ca.issue(RELAY);
  writeFileSync(join(dir, 'relay.crt'), r.chainPem);
  writeFileSync(join(dir, 'relay.key'), r.keyPem, { mode: 0o600 });
  const nodeSvid = await ca.issue(`spiffe://${TD}/meshauth/node/node-a`);
  store = AuditStore.open({ path: join(dir, 'node-a.db') });
  store.append([{ type: 'reauth', outcome: 'info', reason: 'from-node-a' }]);
  node = await startApiServer({
    store,
    daemon: new FakeDaemon(),
    unix: false,
    tcp: {
      host: '127.0.0.1',
      port: 0,
      svid: () => ({ certChainPem: nodeSvid.chainPem, keyPem: nodeSvid.keyPem }),
      bundles: () => new Map([[TD, [ca.caDer]]]),
      allow: [RELAY],
    },
  });
}, 180_000);

afterAll(async () => {
  await node?.close();
  store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const tls = () => [
  '--tls-cert',
  join(dir, 'relay.crt'),
  '--tls-key',
  join(dir, 'relay.key'),
  '--tls-bundle',
  join(dir, 'ca.pem'),
];

describe('meshauth-relay binary', () => {
  it.each([
    [['--allow', ADMIN, '--node', 'a=127.0.0.1:1'], /--tls-cert, --tls-key, --tls-bundle: required/],
    // an unknown flag is named as such, not hidden behind the missing required ones
    [['--bogus'], /unknown option '--bogus'/],
    [['--allow', ADMIN, '--node', 'a=127.0.0.1:1', '--witness-allow', ADMIN], /both list/],
    [
      ['--allow', ADMIN, '--node', 'a=127.0.0.1:1', '--witness-allow', 'node-b'],
      /--witness-allow node-b: parse SPIFFE ID/,
    ],
    [
      ['--allow', ADMIN, '--node', 'a=127.0.0.1:1', '--witness-max-skew', '0'],
      /--witness-max-skew: must be a duration between 1s and 1d \(e\.g\. 30s, 5m; a bare number is seconds\) \(got "0"\)/,
    ],
    [
      ['--allow', ADMIN, '--node', 'a=127.0.0.1:1', '--witness-max-skew', '2x'],
      /--witness-max-skew: must be a duration between 1s and 1d .*\(got "2x"\)/,
    ],
    [
      ['--allow', ADMIN, '--node', 'a=127.0.0.1:1', '--witness-max-skew', '25h'],
      /--witness-max-skew: must be a duration between 1s and 1d .*\(got "25h"\)/,
    ],
    [
      ['--allow', ADMIN, '--node', 'a=127.0.0.1:1', '--node-deadline', '11m'],
      /--node-deadline: must be a duration between 1ms and 10m .*\(got "11m"\)/,
    ],
    [['--node', 'a=127.0.0.1:1'], /--allow: required \(at least one query client SPIFFE ID\)/],
    [['--allow', ADMIN], /--node, --nodes-file or --kubernetes/],
    [['--allow', ADMIN, '--node', 'not a node'], /name=host:port/],
    [['--allow', ADMIN, '--kubernetes'], /--api-port/],
    [['--allow', ADMIN, '--kubernetes', '--api-port', '70000'], /--api-port/],
    [['--allow', ADMIN, '--kubernetes', '--api-port', '4251', '--node', 'a=127.0.0.1:1'], /do not combine/],
    [
      ['--allow', ADMIN, '--kubernetes', '--api-port', '4251', '--node-id-template', 'spiffe://td/node'],
      /\{node\}/,
    ],
    [['--allow', ADMIN, '--api-port', '4251', '--node', 'a=127.0.0.1:1'], /need --kubernetes/],
    [
      ['--allow', ADMIN, '--node', 'a=127.0.0.1:70000'],
      /"a=127\.0\.0\.1:70000": the port must be between 1 and 65535 \(got 70000\)/,
    ],
    [['--allow', 'ops-admin', '--node', 'a=127.0.0.1:1'], /--allow ops-admin: parse SPIFFE ID/],
    [
      ['--allow', ADMIN, '--node', 'a=127.0.0.1:1', '--log-level', 'loud'],
      /--log-level loud: expected one of/,
    ],
  ])('exits 2 on bad usage %j', (args, message) => {
    const withTls = !/--tls-cert, --tls-key|bogus/.test((message as RegExp).source);
    const r = spawnSync(process.execPath, [BIN, ...(withTls ? tls() : []), ...(args as string[])], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
  });

  it.each([
    ['its SVID file is missing', { cert: 'missing.crt' }, /--tls-cert \S*missing\.crt: no such file$/m],
    ['its key file is missing', { key: 'missing.key' }, /--tls-key \S*missing\.key: no such file$/m],
    ['its bundle file is a directory', { bundle: '.' }, /--tls-bundle \S*: is a directory, not a file$/m],
    ['its certificate file is not PEM', { cert: 'junk' }, /junk: not a PEM certificate chain/],
    ['its key file is not PEM', { key: 'junk' }, /junk: not a PEM private key/],
    ['its bundle file is not PEM', { bundle: 'junk' }, /junk: not a PEM certificate bundle/],
    [
      'its key belongs to another certificate',
      { key: 'other.key' },
      /other\.key: the private key does not belong/,
    ],
  ])(
    'exits 2 (a configuration error) with one line naming the file when %s (no stack trace)',
    async (_what, files, message) => {
      writeFileSync(join(dir, 'junk'), 'relay\n');
      writeFileSync(join(dir, 'other.key'), (await ca.issue(RELAY)).keyPem, { mode: 0o600 });
      const f = { cert: 'relay.crt', key: 'relay.key', bundle: 'ca.pem', ...files };
      expectRefusedToStart(
        [
          '--tls-cert',
          join(dir, f.cert),
          '--tls-key',
          join(dir, f.key),
          '--tls-bundle',
          join(dir, f.bundle),
          '--allow',
          ADMIN,
          '--node',
          'a=127.0.0.1:1',
          '--listen',
          '127.0.0.1:0',
          '--audit-db',
          join(dir, 'unused.db'),
        ],
        message,
      );
    },
  );

  it.each([
    ['is missing', 'missing-nodes', /--nodes-file \S*missing-nodes: no such file$/m],
    ['is a directory', '.', /--nodes-file \S*: is a directory, not a file$/m],
    [
      'is not a node list',
      'bad-nodes',
      /--nodes-file \S*bad-nodes: node list: "node-a 127\.0\.0\.1" is not name=host:port/,
    ],
    [
      'lists no nodes',
      'empty-nodes',
      /--nodes-file \S*empty-nodes: lists no nodes \(and no --node given\)$/m,
    ],
  ])(
    'exits 2 with one line naming --nodes-file when the file %s (it does not serve with no nodes)',
    (_what, file, message) => {
      writeFileSync(join(dir, 'bad-nodes'), 'node-a 127.0.0.1\n');
      writeFileSync(join(dir, 'empty-nodes'), '# no nodes yet\n');
      expectRefusedToStart(
        [
          ...tls(),
          '--allow',
          ADMIN,
          '--nodes-file',
          join(dir, file),
          '--listen',
          '127.0.0.1:0',
          '--audit-db',
          join(dir, 'unused.db'),
        ],
        message,
      );
    },
  );

  it('--help into a pipe its reader has closed (| head -1) exits 0 without a stack trace', async () => {
    const p = spawn(process.execPath, [BIN, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    // close the read end before the relay writes: its write fails with EPIPE
    p.stdout!.destroy();
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => p.once('close', (c) => r(c)));
    expect(err).toBe('');
    expect(code).toBe(0);
  }, 30_000);

  it('serves its nodes from a node list file and stops on SIGTERM; durations with a unit or in bare seconds', async () => {
    const port = await freePort();
    writeFileSync(join(dir, 'nodes'), `# the cluster\nnode-a=127.0.0.1:${node.tcpPort}\n`);
    const p = spawn(
      process.execPath,
      [
        BIN,
        ...tls(),
        '--listen',
        `127.0.0.1:${port}`,
        '--allow',
        ADMIN,
        '--nodes-file',
        join(dir, 'nodes'),
        '--audit-db',
        join(dir, 'relay.db'),
        '--witness-max-skew',
        '2m',
        '--node-deadline',
        '1.5',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    p.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    try {
      for (let i = 0; i < 300 && !log.includes('relay_started'); i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(log).toContain('relay_started');
      const started = JSON.parse(log.split('\n').find((l) => l.includes('relay_started'))!) as Record<
        string,
        unknown
      >;
      expect(started).toMatchObject({ witness_max_skew_ms: 120_000, node_deadline_ms: 1_500 });
      const admin = await ca.issue(ADMIN);
      const c = new ApiClient({
        address: `127.0.0.1:${port}`,
        timeoutMs: 10_000,
        tls: {
          certChainPem: Buffer.from(admin.chainPem),
          keyPem: Buffer.from(admin.keyPem),
          caPem: Buffer.from(ca.caPem),
          serverSpiffeId: RELAY,
        },
      });
      try {
        const page = await c.queryEvents({ pageSize: 10 });
        expect(page.partial).toBe(false);
        expect(page.events.map((e) => [e.origin, e.reason])).toEqual([['node-a', 'from-node-a']]);
      } finally {
        c.close();
      }
    } finally {
      const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
      p.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  }, 60_000);
});
