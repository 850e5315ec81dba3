/**
 * The two-node scenario over WireGuard (wireguard-go): pod traffic between nodes goes through the
 * tunnel meshauthd manages, the handshake is bound to each node's WireGuard key, and strict mode
 * drops remote-pod traffic that arrives on the underlay instead of through the tunnel.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { podTool, summarize, type Cluster } from '../../demo/cluster.js';
import { run } from '../helpers/netns.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

describe('meshauth over WireGuard', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;
  const nodeNs = (n: string): string => cluster.topo.nodeNs[n]!;

  beforeAll(async () => {
    env = await startDemoCluster('wg', {
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'api-to-cache', from: id('api'), to: id('cache') },
      ],
      wireguard: { strict: true },
    });
    cluster = env.cluster;
  }, 90_000);

  afterAll(async () => {
    await env?.teardown();
  });

  it('authenticates a pair and carries its traffic through the tunnel, unreadable on the underlay', async () => {
    const capture = join(cluster.opts.workDir, 'underlay.pcap');
    const dump = cluster.topo.lab.spawn(nodeNs('node-b'), 'tcpdump', [
      '-i',
      'eth0',
      '-U',
      '--immediate-mode',
      '-n',
      '-Z',
      'root',
      '-w',
      capture,
    ]);
    let dumpErr = '';
    dump.stderr!.on('data', (d: Buffer) => (dumpErr += d.toString()));
    await expect.poll(() => dumpErr, { timeout: 10_000 }).toContain('listening on eth0');
    const r = await cluster.connect('web', 'db', 8080, 8000);
    expect(r, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    await new Promise((res) => setTimeout(res, 1000));
    const exited = new Promise((res) => dump.once('exit', res));
    dump.kill('SIGINT');
    await exited;
    expect(cluster.authEntries('node-a')).toHaveLength(1);
    expect(cluster.authEntries('node-b')).toHaveLength(1);
    // The reply crossed the underlay, but only inside WireGuard: its bytes are not in the capture,
    // while WireGuard's UDP port is.
    const pcap = readFileSync(capture);
    expect(pcap.length).toBeGreaterThan(24);
    expect(pcap.includes(Buffer.from('ok db'))).toBe(false);
    const udp = run('tcpdump', ['-n', '-r', capture, 'udp port 51820']);
    expect(udp.split('\n').filter(Boolean).length).toBeGreaterThan(0);
    const transfer = cluster.topo.lab.exec(nodeNs('node-a'), 'wg', [
      'show',
      cluster.wgInterface('node-a'),
      'transfer',
    ]);
    expect(Number(transfer.trim().split(/\s+/)[1])).toBeGreaterThan(0);
  });

  it('strict mode drops a pod-sourced packet that arrives on the underlay, not through the tunnel', async () => {
    const lab = cluster.topo.lab;
    const a = nodeNs('node-a');
    // Make node-a send as "api" (a node-a pod) straight over the underlay to db.
    lab.exec(a, 'ip', ['addr', 'add', '10.90.1.12/32', 'dev', 'lo']);
    lab.exec(a, 'ip', [
      'route',
      'add',
      '10.90.2.11/32',
      'via',
      '192.168.90.2',
      'dev',
      'eth0',
      'src',
      '10.90.1.12',
    ]);
    try {
      const before = cluster.counters('node-b');
      const out = lab.exec(
        a,
        'node',
        [podTool(), 'connect', '--host', '10.90.2.11', '--port', '8080', '--timeout', '1500'],
        {
          timeoutMs: 10_000,
        },
      );
      expect(JSON.parse(out)).toMatchObject({ ok: false });
      const after = cluster.counters('node-b');
      expect(after['drop_not_via_wireguard']! - before['drop_not_via_wireguard']!).toBeGreaterThanOrEqual(1);
    } finally {
      lab.exec(a, 'ip', ['route', 'del', '10.90.2.11/32']);
      lab.exec(a, 'ip', ['addr', 'del', '10.90.1.12/32', 'dev', 'lo']);
    }
    // Tunnel traffic still passes.
    expect((await cluster.connect('web', 'db', 8080, 5000)).ok).toBe(true);
  });

  it('writes no entry when the peer node presents a WireGuard key other than the inventory holds', async () => {
    await cluster.stop('node-b', 'SIGTERM');
    const keyFile = join(cluster.stateDir('node-b'), 'wireguard', 'private.key');
    writeFileSync(keyFile, `${run('wg', ['genkey']).trim()}\n`, { mode: 0o600 });
    await cluster.start('node-b');
    cluster.cli('node-a', ['flush', '--all']);
    const r = await cluster.connect('api', 'cache', 8080, 2500);
    expect(r.ok).toBe(false);
    await expect
      .poll(() => cluster.logs('node-a', 'auth_failed').map((l) => l['reason']), { timeout: 5000 })
      .toContain('wireguard-key-mismatch');
    expect(cluster.authEntries('node-a')).toHaveLength(0);
    // The audit writer commits the failure's record after its log line: ask until it is there (an
    // empty answer is no line, not one).
    const failures = () =>
      cluster
        .cli('node-a', ['events', '--reason', 'wireguard-key-mismatch', '-o', 'json'])
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { reason?: string }).reason);
    await expect.poll(failures, { timeout: 10_000 }).toContain('wireguard-key-mismatch');
  }, 60_000);
});
