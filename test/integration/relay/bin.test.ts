/**
 * The meshauth-relay binary as an operator runs it: flags, its SVID files, a node list file; usage
 * errors exit 2, and a running relay answers for its node and stops cleanly on SIGTERM.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, startApiServer, type ApiServer } from '../../../src/api/index.js';
import { AuditStore } from '../../../src/audit/index.js';
import { DevCa } from '../../../src/identity/index.js';
import { FakeDaemon } from '../api/fake-daemon.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const BIN = join(ROOT, 'bin', 'meshauth-relay.js');
const TD = 'cluster.test';
const RELAY = `spiffe://${TD}/meshauth/relay`;
const ADMIN = `spiffe://${TD}/ops/admin`;

let dir: string;
let ca: DevCa;
let store: AuditStore;
let node: ApiServer;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
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
      /--witness-max-skew 0: seconds/,
    ],
    [['--node', 'a=127.0.0.1:1'], /--allow/],
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
    [['--allow', ADMIN, '--node', 'a=127.0.0.1:70000'], /port 70000 is not in 1\.\.65535/],
    [['--allow', 'ops-admin', '--node', 'a=127.0.0.1:1'], /--allow ops-admin: parse SPIFFE ID/],
    [
      ['--allow', ADMIN, '--node', 'a=127.0.0.1:1', '--log-level', 'loud'],
      /--log-level loud: expected one of/,
    ],
  ])('exits 2 on bad usage %j', (args, message) => {
    const withTls = !/required|bogus/.test((message as RegExp).source);
    const r = spawnSync(process.execPath, [BIN, ...(withTls ? tls() : []), ...(args as string[])], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
  });

  it.each([
    ['its SVID file is missing', { cert: 'missing.crt' }, /missing\.crt: unreadable: ENOENT/],
    ['its certificate file is not PEM', { cert: 'junk' }, /junk: not a PEM certificate chain/],
    ['its key file is not PEM', { key: 'junk' }, /junk: not a PEM private key/],
    ['its bundle file is not PEM', { bundle: 'junk' }, /junk: not a PEM certificate bundle/],
    [
      'its key belongs to another certificate',
      { key: 'other.key' },
      /other\.key: the private key does not belong/,
    ],
  ])('exits 1 with one line naming the file when %s (no stack trace)', async (_what, files, message) => {
    writeFileSync(join(dir, 'junk'), 'relay\n');
    writeFileSync(join(dir, 'other.key'), (await ca.issue(RELAY)).keyPem, { mode: 0o600 });
    const f = { cert: 'relay.crt', key: 'relay.key', bundle: 'ca.pem', ...files };
    const r = spawnSync(
      process.execPath,
      [
        BIN,
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
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^meshauth-relay: could not start: /m);
    expect(r.stderr).toMatch(message);
    expect(r.stderr + r.stdout).not.toMatch(/\n\s+at /);
  });

  it('serves its nodes from a node list file and stops on SIGTERM', async () => {
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
