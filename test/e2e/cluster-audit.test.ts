/**
 * The cluster-wide audit on three nodes: node-a, node-b and node-c in network namespaces joined by
 * a bridged underlay (demo/topology.ts with three nodes), one meshauthd each over WireGuard
 * (wireguard-go, one peer per other node), and meshauth-relay in a namespace of its own on the
 * same underlay, as a relay Deployment reaches the nodes over the cluster network.
 *
 * Every node signs its audit head every second and hands it to the relay and to both other nodes,
 * which record it in their own trails. The operator, in the relay's namespace, asks the relay for
 * the whole cluster's events (query and --follow, the node named on each), sees the answer
 * flagged partial while node-c is down, and checks trails with `meshauth audit verify
 * --witnesses` against the three witnesses of each node: an honest trail passes even when one
 * witness lies about the heads it holds; a trail rewritten by root on its node (hashes
 * recomputed, new heads signed with the node's own key) is caught at the first divergent
 * witnessed seq.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT, summarize, type Cluster } from '../../demo/cluster.js';
import { clusterLayout } from '../../demo/topology.js';
import {
  AuditStore,
  listWitnessedHeads,
  originOf,
  signHead,
  type AuditEventInput,
  type StoredAuditEvent as AuditRow,
} from '../../src/audit/index.js';
import { DevCa } from '../../src/identity/index.js';
import { parseCertificates } from '../../src/spiffe/index.js';
import { run } from '../helpers/netns.js';
import { idOf as id, startDemoCluster, type DemoCluster } from './setup.js';

const ADMIN = 'spiffe://demo.local/ops/admin';
const RELAY = 'spiffe://demo.local/meshauth/relay';
const NODE_NAMES = ['node-a', 'node-b', 'node-c'] as const;
type NodeName = (typeof NODE_NAMES)[number];
const LAYOUT = clusterLayout(NODE_NAMES.length);
const addrOf = (node: NodeName): string => `${LAYOUT.nodes.find((n) => n.name === node)!.underlayIp}:4251`;
// the relay's port on the underlay bridge (the nodes are 192.168.90.1..3)
const RELAY_IP = '192.168.90.100';
const RELAY_ADDR = `${RELAY_IP}:4252`;
// the SPIFFE ID each node's API presents and signs its audit head with (a workload of that node)
const SELF: Record<NodeName, string> = { 'node-a': id('api'), 'node-b': id('cache'), 'node-c': id('worker') };
const others = (node: NodeName): NodeName[] => NODE_NAMES.filter((n) => n !== node);
const GRPCURL =
  process.env['MESHAUTH_GRPCURL'] ??
  spawnSync('bash', [join(PACKAGE_ROOT, 'scripts/build-grpcurl.sh'), '--print-bin'], {
    encoding: 'utf8',
  }).stdout.trim();

interface EventLine {
  seq: number;
  atMs: number;
  type: string;
  origin?: string;
  localId?: string;
  remoteId?: string;
  node?: string;
}

const waitFor = async (what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** Every row of a trail file, oldest first (opened read-only: the daemon may be writing). */
function rowsOf(path: string): AuditRow[] {
  const s = AuditStore.open({ path, readonly: true });
  try {
    return s.query({ limit: 10_000 });
  } finally {
    s.close();
  }
}

/** Seqs of `spiffeId`'s heads recorded in a witness's trail file. */
function witnessedSeqs(path: string, spiffeId: string): number[] {
  const s = AuditStore.open({ path, readonly: true });
  try {
    return listWitnessedHeads(s, spiffeId).map((h) => Number(h.note.split('\n')[1]));
  } finally {
    s.close();
  }
}

const asInput = (r: AuditRow): AuditEventInput => {
  const e: AuditEventInput = { type: r.type, atMs: r.atMs };
  if (r.outcome) e.outcome = r.outcome;
  if (r.reason) e.reason = r.reason;
  if (r.localId) e.localId = r.localId;
  if (r.remoteId) e.remoteId = r.remoteId;
  if (r.node) e.node = r.node;
  if (r.direction) e.direction = r.direction;
  if (r.details) e.details = r.details;
  return e;
};

describe('cluster-wide audit on three nodes with the relay in its own namespace', () => {
  let env: DemoCluster | undefined;
  let cluster: Cluster;
  let dir: string;
  let relayNs: string;
  let relay: ChildProcess | undefined;
  let relayLog = '';
  let follow: ChildProcess | undefined;
  let followOut = '';
  let followErr = '';
  const trail = (node: NodeName): string => join(dir, `${node}-audit.db`);
  const relayTrail = (): string => join(dir, 'relay-audit.db');
  /** Each witness of a node: its address and where it records heads. */
  const witnessesOf = (node: NodeName): { address: string; trail: string }[] => [
    ...others(node).map((w) => ({ address: addrOf(w), trail: trail(w) })),
    { address: RELAY_ADDR, trail: relayTrail() },
  ];

  beforeAll(async () => {
    expect(LAYOUT.nodes.map((n) => n.name)).toEqual(NODE_NAMES);
    dir = mkdtempSync(join(tmpdir(), 'meshauth-caud-'));
    env = await startDemoCluster('caud', {
      nodes: 3,
      wireguard: {},
      rules: [
        { name: 'web-to-db', from: id('web'), to: id('db') },
        { name: 'web-to-queue', from: id('web'), to: id('queue') },
      ],
      serve: ['db', 'queue'],
      apiTcp: (node) => ({
        listen: addrOf(node as NodeName),
        allowedIds: [ADMIN, RELAY, ...others(node as NodeName).map((n) => SELF[n])],
        identity: SELF[node as NodeName],
      }),
      extraConfig: (node) => ({
        audit: {
          path: trail(node as NodeName),
          witnesses: [...others(node as NodeName).map(addrOf), RELAY_ADDR],
          headInterval: '1s',
        },
      }),
    });
    cluster = env.cluster;
    const topo = cluster.topo;
    relayNs = topo.lab.addNamespace('relay');
    topo.attachUnderlay(relayNs, 'eth0', `${RELAY_IP}/24`);

    const ca = await DevCa.load({
      caCert: join(cluster.caDir, 'ca.crt'),
      caKey: join(cluster.caDir, 'ca.key'),
    });
    writeFileSync(join(dir, 'bundle.pem'), ca.caPem);
    for (const [name, spiffeId] of [
      ['admin', ADMIN],
      ['relay', RELAY],
    ] as const) {
      const svid = await ca.issue(spiffeId);
      writeFileSync(join(dir, `${name}.crt`), svid.chainPem);
      writeFileSync(join(dir, `${name}.key`), svid.keyPem, { mode: 0o600 });
    }
    relay = topo.lab.spawn(relayNs, process.execPath, [
      join(PACKAGE_ROOT, 'bin/meshauth-relay.js'),
      '--listen',
      `0.0.0.0:4252`,
      '--tls-cert',
      join(dir, 'relay.crt'),
      '--tls-key',
      join(dir, 'relay.key'),
      '--tls-bundle',
      join(dir, 'bundle.pem'),
      // the operator queries; the nodes submit their signed heads
      ...[ADMIN, ...NODE_NAMES.map((n) => SELF[n])].flatMap((a) => ['--allow', a]),
      '--audit-db',
      relayTrail(),
      '--node-deadline',
      '2',
      ...NODE_NAMES.flatMap((n) => ['--node', `${n}=${addrOf(n)}=${SELF[n]}`]),
    ]);
    relay.stdout!.on('data', (c: Buffer) => (relayLog += c.toString()));
    relay.stderr!.on('data', (c: Buffer) => (relayLog += c.toString()));
    await waitFor(`meshauth-relay to start: ${relayLog}`, () => {
      if (relay!.exitCode !== null) throw new Error(`meshauth-relay exited: ${relayLog}`);
      return relayLog.includes('relay_started');
    });
  }, 180_000);

  afterAll(async () => {
    follow?.kill('SIGKILL');
    relay?.kill('SIGTERM');
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The operator's CLI with the admin SVID, run in the relay's namespace. */
  const cliArgv = (args: string[]): [string, string[]] =>
    env!.lab.argv(relayNs, process.execPath, [
      join(PACKAGE_ROOT, 'dist/src/cli/main.js'),
      '--tls-cert',
      join(dir, 'admin.crt'),
      '--tls-key',
      join(dir, 'admin.key'),
      '--tls-bundle',
      join(dir, 'bundle.pem'),
      ...args,
    ]);
  const cli = (args: string[]): { status: number | null; stdout: string; stderr: string } => {
    const [cmd, argv] = cliArgv(args);
    const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const lines = (stdout: string): EventLine[] =>
    stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as EventLine);
  /** `meshauth --relay ... events --limit 0 -o json` */
  const clusterEvents = () => {
    const r = cli(['--relay', '127.0.0.1:4252', 'events', '--limit', '0', '-o', 'json']);
    return { ...r, events: r.status === 0 ? lines(r.stdout) : [] };
  };
  /** `meshauth audit verify --witnesses` of a trail file against the node's three witnesses. */
  const verify = (node: NodeName, db: string) => {
    const r = cli([
      'audit',
      'verify',
      '--db',
      db,
      '--node-id',
      SELF[node],
      '--witnesses',
      witnessesOf(node)
        .map((w) => w.address)
        .join(','),
      '-o',
      'json',
    ]);
    return {
      ...r,
      report: JSON.parse(r.stdout) as {
        ok: boolean;
        headsMatched: number;
        unreachable: unknown[];
        refused: { witness: string; reason: string }[];
        problem?: { seq: number; kind: string; range?: [number, number] };
      },
    };
  };
  /** QueryEvents on the relay with grpcurl (server reflection, no .proto files). */
  const grpcQuery = (): Array<Record<string, unknown>> => {
    const [cmd, argv] = env!.lab.argv(relayNs, GRPCURL, [
      // the SVID names a SPIFFE ID, not a host name grpcurl could check: the CLI checks the
      // server's ID; here only the wire answer matters
      '-insecure',
      '-cert',
      join(dir, 'admin.crt'),
      '-key',
      join(dir, 'admin.key'),
      '-d',
      JSON.stringify({ pageSize: 1000 }),
      '127.0.0.1:4252',
      'meshauth.v1.Audit/QueryEvents',
    ]);
    const out = run(cmd, argv, { timeoutMs: 60_000 });
    return out
      .split(/\n(?=\{)/)
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => JSON.parse(s) as Record<string, unknown>);
  };

  it('runs three nodes on one bridged underlay, each with a WireGuard peer per other node', async () => {
    for (const n of NODE_NAMES) {
      const peers = run('wg', ['show', cluster.wgInterface(n), 'peers'])
        .split('\n')
        .filter(Boolean);
      expect(peers, n).toHaveLength(2);
    }
    // pod traffic between every pair of nodes it is allowed for: node-a to node-b and node-c
    const toDb = await cluster.connect('web', 'db', 8080, 8000);
    expect(toDb, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok db' });
    const toQueue = await cluster.connect('web', 'queue', 8080, 8000);
    expect(toQueue, summarize(cluster.logs('node-a'))).toMatchObject({ ok: true, reply: 'ok queue' });
    // The audit writer commits a handshake's record after its entry: wait for each peer's record
    // (node-a's of both handshakes, which the rewrite test below relies on, too).
    const peersOf = (node: NodeName) =>
      new Set(rowsOf(trail(node)).flatMap((r) => (r.type === 'handshake-succeeded' ? [r.node] : [])));
    await waitFor('every handshake in all three trails', () => {
      const a = peersOf('node-a');
      return a.has('node-b') && a.has('node-c') && peersOf('node-b').size > 0 && peersOf('node-c').size > 0;
    });
    expect([...peersOf('node-b')]).toContain('node-a');
    expect([...peersOf('node-c')]).toContain('node-a');
  });

  it('answers one query for all three nodes, merged by time, the node named on each event', () => {
    const all = clusterEvents();
    expect(all.status, all.stderr).toBe(0);
    expect(all.stderr).not.toMatch(/PARTIAL/);
    expect(new Set(all.events.map((e) => e.origin))).toEqual(new Set(NODE_NAMES));
    const times = all.events.map((e) => e.atMs);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // the handshakes of each node, named by the node whose trail holds them
    for (const n of NODE_NAMES) {
      const own = rowsOf(trail(n));
      const got = all.events.filter((e) => e.origin === n && e.type === 'handshake-succeeded');
      expect(got.length, n).toBeGreaterThan(0);
      for (const e of got) expect(own.find((r) => r.seq === e.seq)?.type, `${n} seq ${e.seq}`).toBe(e.type);
    }
  });

  it('follows all three nodes through the relay, then says which node stopped streaming', async () => {
    const [cmd, argv] = cliArgv(['--relay', '127.0.0.1:4252', 'events', '--follow', '-n', '1', '-o', 'json']);
    follow = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    follow.stdout!.on('data', (c: Buffer) => (followOut += c.toString()));
    follow.stderr!.on('data', (c: Buffer) => (followErr += c.toString()));
    const followed = () => lines(followOut.slice(0, followOut.lastIndexOf('\n') + 1));
    // every node records the heads the other two hand it each second: the stream carries them
    // from all three nodes, each naming the node whose head it witnessed
    const witnessedBy = (n: NodeName) =>
      new Set(followed().flatMap((e) => (e.origin === n && e.type === 'head-witnessed' ? [e.remoteId] : [])));
    await waitFor(`each node witnessing both others on the follow stream: ${followErr}`, () =>
      NODE_NAMES.every((n) => witnessedBy(n).size >= 2),
    );
    // a witness records heads of the other nodes only
    for (const n of NODE_NAMES) expect(witnessedBy(n), n).toEqual(new Set(others(n).map((o) => SELF[o])));
    // node-c goes down: the stream goes on for the others and says node-c is missing
    const before = followed().length;
    expect(await cluster.stop('node-c')).toBe(0);
    await waitFor('the follow stream to flag node-c', () =>
      /PARTIAL: node node-c stopped streaming/.test(followErr),
    );
    await waitFor('events from node-a and node-b after node-c stopped', () => {
      const after = followed().slice(before);
      return after.some((e) => e.origin === 'node-a') && after.some((e) => e.origin === 'node-b');
    });
    expect(followErr).not.toMatch(/node node-a|node node-b/);
    expect(follow.exitCode).toBeNull();
  });

  it('flags the answer partial while node-c is down, in the CLI and on the wire', () => {
    const partial = clusterEvents();
    expect(partial.status, partial.stderr).toBe(0);
    expect(partial.stderr).toMatch(/PARTIAL: node node-c is missing from this answer \(unreachable/);
    expect(partial.stderr).not.toMatch(/node node-a|node node-b/);
    expect(new Set(partial.events.map((e) => e.origin))).toEqual(new Set(['node-a', 'node-b']));

    const msgs = grpcQuery();
    const end = msgs.find((m) => m['pageEnd'])?.['pageEnd'] as
      { partial?: boolean; nodes?: { node: string; ok?: boolean; reason?: string }[] } | undefined;
    expect(end?.partial).toBe(true);
    const byNode = Object.fromEntries((end?.nodes ?? []).map((n) => [n.node, n]));
    expect(byNode['node-a']?.ok).toBe(true);
    expect(byNode['node-b']?.ok).toBe(true);
    expect(byNode['node-c']?.ok ?? false).toBe(false);
    expect(byNode['node-c']?.reason).toBe('unreachable');
    const origins = new Set(
      msgs.flatMap((m) => (m['event'] ? [(m['event'] as { origin: string }).origin] : [])),
    );
    expect(origins).toEqual(new Set(['node-a', 'node-b']));
  });

  it("records each node's heads at the relay and both other nodes; a lying witness cannot frame node-b", async () => {
    // node-c is still down; node-a and node-b go on witnessing each other and reach the relay
    // (the relay's trail was not waited on before: poll each witness until it holds a head)
    for (const n of NODE_NAMES)
      for (const w of witnessesOf(n))
        await expect
          .poll(() => witnessedSeqs(w.trail, SELF[n]).length, {
            message: `${n} at ${w.address}`,
            timeout: 30_000,
          })
          .toBeGreaterThan(0);
    // the witnesses name the node on what they recorded
    const onB = () =>
      new Set(
        rowsOf(trail('node-b'))
          .filter((r) => r.type === 'head-witnessed')
          .map((r) => `${r.node} ${r.remoteId}`),
      );
    await expect
      .poll(onB, { timeout: 30_000 })
      .toEqual(new Set([`node-a ${SELF['node-a']}`, `node-c ${SELF['node-c']}`]));
    for (const n of ['node-a', 'node-b'] as const)
      expect(cluster.logs(n, 'audit_head_refused'), n).toHaveLength(0);

    // root on node-c (down) makes its trail lie about node-b's heads, keeping its own chain
    // intact: a real head with its hash swapped, a head signed with node-c's own SVID in node-b's
    // name, and one signed by a CA of the attacker's
    const bHeads = (() => {
      const s = AuditStore.open({ path: trail('node-c'), readonly: true });
      try {
        return listWitnessedHeads(s, SELF['node-b']);
      } finally {
        s.close();
      }
    })();
    const real = bHeads.at(-1)!;
    expect(real).toBeDefined();
    const [origin, size, root, ...rest] = real.note.split('\n');
    let other = randomBytes(32).toString('base64');
    if (other === root) other = Buffer.alloc(32, 1).toString('base64');
    const swapped = [origin, size, other, ...rest].join('\n');
    const ca = await DevCa.load({
      caCert: join(cluster.caDir, 'ca.crt'),
      caKey: join(cluster.caDir, 'ca.key'),
    });
    const cOwn = await ca.issue(SELF['node-c']);
    const rogue = await (await DevCa.create('demo.local')).issue(SELF['node-b']);
    const bLast = rowsOf(trail('node-b')).at(-1)!.seq;
    const forge = (svid: { chainPem: string; keyPem: string }) => ({
      note: signHead(
        {
          origin: originOf(SELF['node-b']),
          treeSize: bLast + 100,
          hash: randomBytes(32),
          atMs: Date.now(),
          node: 'node-b',
        },
        svid,
      ),
      certChain: parseCertificates(svid.chainPem).map((der) => der.toString('base64')),
    });
    const lies = [
      { note: swapped, certChain: real.certChain.map((c) => c.toString('base64')) },
      forge(cOwn),
      forge(rogue),
    ];
    const c = AuditStore.open({ path: trail('node-c') });
    try {
      c.append(
        lies.map((l) => ({
          type: 'head-witnessed',
          outcome: 'info',
          atMs: Date.now(),
          localId: SELF['node-c'],
          remoteId: SELF['node-b'],
          node: 'node-b',
          details: { note: l.note, certChain: l.certChain },
        })),
      );
      expect(c.verifyChain([]).ok).toBe(true);
    } finally {
      c.close();
    }
    expect(witnessedSeqs(trail('node-c'), SELF['node-b']).length).toBe(bHeads.length + lies.length);
    await cluster.start('node-c');

    const r = verify('node-b', trail('node-b'));
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.report.ok).toBe(true);
    expect(r.report.unreachable).toEqual([]);
    expect(r.report.headsMatched).toBeGreaterThan(0);
    expect(r.report.refused.map((x) => [x.witness, x.reason]).sort()).toEqual(
      [
        [addrOf('node-c'), 'bad-signature'],
        [addrOf('node-c'), 'untrusted-signer'],
        [addrOf('node-c'), 'wrong-node'],
      ].sort(),
    );
  });

  it("catches node-a's trail rewritten by root on node-a at the first divergent witnessed seq", async () => {
    // the evidence root wants gone: node-a's record of its handshake with node-c
    const before = rowsOf(trail('node-a'));
    const target = before.find((r) => r.type === 'handshake-succeeded' && r.node === 'node-c')!;
    expect(target).toBeDefined();
    await waitFor('a head of node-a past the target witnessed by all three witnesses', () =>
      witnessesOf('node-a').every((w) => witnessedSeqs(w.trail, SELF['node-a']).some((s) => s >= target.seq)),
    );
    const honest = verify('node-a', trail('node-a'));
    expect(honest.status, honest.stdout + honest.stderr).toBe(0);
    expect(honest.report).toMatchObject({ ok: true, refused: [], unreachable: [] });

    // root stops the daemon, rebuilds the trail with the event altered and every hash
    // recomputed, and starts the daemon again on it: it signs heads of the rewritten trail with
    // node-a's own SVID and hands them to the witnesses
    expect(await cluster.stop('node-a')).toBe(0);
    const rows = rowsOf(trail('node-a'));
    const lastSeq = rows.at(-1)!.seq;
    const oldWitnessed = new Set(
      witnessesOf('node-a').flatMap((w) => witnessedSeqs(w.trail, SELF['node-a'])),
    );
    const rebuilt = join(dir, 'node-a-rebuilt.db');
    const s = AuditStore.open({ path: rebuilt });
    s.append([
      ...rows.map((r): AuditEventInput =>
        r.seq === target.seq
          ? { ...asInput(r), type: 'handshake-failed', outcome: 'failure', reason: 'timeout' }
          : asInput(r),
      ),
      // and a failed retry after it, to go with the story: the rewritten trail is one row longer,
      // so no head of it shares a seq with a head witnessed before (two signed heads for one seq
      // would be reported as a fork there rather than as the rewrite)
      {
        ...asInput(target),
        type: 'handshake-failed',
        outcome: 'failure',
        reason: 'timeout',
        atMs: Date.now(),
      },
    ]);
    s.close();
    for (const ext of ['-wal', '-shm']) rmSync(trail('node-a') + ext, { force: true });
    renameSync(rebuilt, trail('node-a'));
    for (const ext of ['-wal', '-shm']) rmSync(rebuilt + ext, { force: true });
    const rewritten = rowsOf(trail('node-a'));
    expect(rewritten.find((r) => r.seq === target.seq)?.type).toBe('handshake-failed');
    await cluster.start('node-a');
    // the witnesses take the new heads (a later seq, a good signature)...
    await waitFor('a head of the rewritten trail witnessed', () =>
      witnessesOf('node-a').some((w) => witnessedSeqs(w.trail, SELF['node-a']).some((q) => q > lastSeq)),
    );
    // ...but still hold the heads they witnessed before
    const firstDivergent = Math.min(...[...oldWitnessed].filter((q) => q >= target.seq));
    const bad = verify('node-a', trail('node-a'));
    expect(bad.status, bad.stdout + bad.stderr).toBe(1);
    expect(bad.report.ok).toBe(false);
    expect(bad.report.problem).toMatchObject({ kind: 'rewritten', seq: firstDivergent });
    const [from, to] = bad.report.problem!.range!;
    expect(from).toBeLessThanOrEqual(target.seq);
    expect(to).toBe(firstDivergent);
    // the operator's text report says the same
    const text = cli([
      'audit',
      'verify',
      '--db',
      trail('node-a'),
      '--node-id',
      SELF['node-a'],
      '--witnesses',
      witnessesOf('node-a')
        .map((w) => w.address)
        .join(','),
    ]);
    expect(text.status).toBe(1);
    expect(text.stdout).toContain(`first divergent seq ${firstDivergent} (rewritten)`);
    // the honest nodes' trails still verify against the same witnesses
    const b = verify('node-b', trail('node-b'));
    expect(b.status, b.stdout + b.stderr).toBe(0);
  });
});
