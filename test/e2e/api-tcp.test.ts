/**
 * The API's TCP listener as meshauthd runs it: mTLS, the SVID of api.tcp.identity presented,
 * clients checked against the allow-list; driven with the meshauth CLI from the other node.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT, type Cluster } from '../../demo/cluster.js';
import { NODES } from '../../demo/topology.js';
import { DevCa } from '../../src/identity/index.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

const ADMIN = 'spiffe://demo.local/ops/admin';
const INTRUDER = 'spiffe://demo.local/ops/intruder';
const NODE_A = NODES.find((n) => n.name === 'node-a')!;
const LISTEN = `${NODE_A.underlayIp}:4251`;

describe('API TCP listener of a running meshauthd', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;
  let dir: string;

  beforeAll(async () => {
    env = await startDemoCluster('apit', {
      rules: [{ name: 'web-to-db', from: id('web'), to: id('db') }],
      apiTcp: (node) =>
        node === 'node-a' ? { listen: LISTEN, allowedIds: [ADMIN], identity: id('api') } : undefined,
    });
    cluster = env.cluster;
    dir = cluster.opts.workDir;
    const ca = await DevCa.load({
      caCert: join(cluster.caDir, 'ca.crt'),
      caKey: join(cluster.caDir, 'ca.key'),
    });
    writeFileSync(join(dir, 'bundle.pem'), ca.caPem);
    for (const [name, spiffeId] of [
      ['admin', ADMIN],
      ['intruder', INTRUDER],
    ] as const) {
      const svid = await ca.issue(spiffeId);
      writeFileSync(join(dir, `${name}.crt`), svid.chainPem);
      writeFileSync(join(dir, `${name}.key`), svid.keyPem, { mode: 0o600 });
    }
  });

  afterAll(async () => {
    await env?.teardown();
  });

  /** Runs the CLI in node-b's namespace against node-a's TCP listener; returns status and output. */
  const cli = (who: string, serverId: string, args: string[]): { status: number; out: string } => {
    try {
      const out = cluster.topo.lab.exec(cluster.topo.nodeNs['node-b']!, process.execPath, [
        join(PACKAGE_ROOT, 'dist/src/cli/main.js'),
        '--address',
        LISTEN,
        '--tls-cert',
        join(dir, `${who}.crt`),
        '--tls-key',
        join(dir, `${who}.key`),
        '--tls-bundle',
        join(dir, 'bundle.pem'),
        '--server-id',
        serverId,
        '--timeout',
        '5',
        ...args,
      ]);
      return { status: 0, out };
    } catch (err) {
      return { status: 1, out: String((err as Error).message) };
    }
  };

  it('serves an allowed client, presenting the SVID of api.tcp.identity', () => {
    const r = cli('admin', id('api'), ['status', '-o', 'json']);
    expect(r.status, r.out).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ node: 'node-a' });
    // no warning about a defaulted identity: it was configured
    expect(cluster.logs('node-a', 'api_tcp_identity_default')).toHaveLength(0);
    expect(cluster.logs('node-a', 'api_listening').some((l) => l['port'] === 4251)).toBe(true);
  });

  it('refuses a client not on the allow-list, and a client expecting another server identity', () => {
    const denied = cli('intruder', id('api'), ['status']);
    expect(denied.status).toBe(1);
    expect(denied.out).toMatch(
      /refused the request: .*client spiffe:\/\/demo\.local\/ops\/intruder is not on the allow-list/,
    );
    expect(denied.out).not.toMatch(/DeprecationWarning/);
    const wrongServer = cli('admin', id('web'), ['status']);
    expect(wrongServer.status).toBe(1);
    expect(wrongServer.out).toMatch(new RegExp(id('api').replace(/[/.]/g, '\\$&')));
  });
});
