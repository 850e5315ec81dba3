/**
 * A three-node cluster on loopback: each node a real meshauth API server (mTLS TCP listener, SQLite
 * audit trail, Witness service), meshauth-relay in front of them with its own SVID and trail, and
 * the meshauth CLI talking to both. Covers the cluster-wide query and follow, a node going down
 * (partial answer), a trail rewritten by root with recomputed hashes and new heads signed with the
 * node's own key (caught by heads witnessed before), and a lying witness (cannot frame the node).
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, startApiServer, type ApiServer, type ApiClientTls } from '../../../src/api/index.js';
import {
  AuditStore,
  HeadPublisher,
  Witness,
  type AuditEventInput,
  type HeadSubmission,
} from '../../../src/audit/index.js';
import { run, type CliIo } from '../../../src/cli/main.js';
import { DevCa } from '../../../src/identity/index.js';
import { startRelay, type RelayServer } from '../../../src/relay/index.js';
import type { Svid } from '../../../src/spiffe/index.js';
import { FakeDaemon } from '../api/fake-daemon.js';

const TD = 'cluster.test';
const NODES = ['node-a', 'node-b', 'node-c'] as const;
type NodeName = (typeof NODES)[number];
const idOf = (n: string) => `spiffe://${TD}/meshauth/node/${n}`;
const RELAY_ID = `spiffe://${TD}/meshauth/relay`;
const ADMIN_ID = `spiffe://${TD}/ops/admin`;
/** A node the relay does not query, allowed to hand it heads (--witness-allow). */
const SUBMITTER_ID = `spiffe://${TD}/meshauth/node/node-x`;
const T0 = Date.now() - 3_600_000;

interface TestNode {
  name: NodeName;
  svid: Svid;
  path: string;
  store: AuditStore;
  server: ApiServer;
  witness: Witness;
  port: number;
}

let dir: string;
let ca: DevCa;
let admin: Svid;
let submitter: Svid;
const nodes = new Map<NodeName, TestNode>();
let relay: RelayServer;
const bundles = () => new Map([[TD, [ca.caDer]]]);

function tlsOf(svid: Svid): ApiClientTls {
  return {
    certChainPem: Buffer.from(svid.chainPem),
    keyPem: Buffer.from(svid.keyPem),
    caPem: Buffer.from(ca.caPem),
  };
}

/** Events node `n` records: its own identities, spread over time so a merge interleaves nodes. */
function eventsFor(n: NodeName, count: number, from = 0, tamper?: { fromSeq: number }): AuditEventInput[] {
  const k = NODES.indexOf(n);
  return Array.from({ length: count }, (_, i) => ({
    type: i % 5 === 0 ? ('handshake-failed' as const) : ('handshake-succeeded' as const),
    outcome: i % 5 === 0 ? ('failure' as const) : ('success' as const),
    ...(i % 5 === 0 ? { reason: 'spiffe-id-mismatch' } : {}),
    atMs: T0 + (from + i) * 30 + k * 10,
    localId: `spiffe://${TD}/ns/${n}/sa/web`,
    remoteId:
      tamper && from + i + 1 >= tamper.fromSeq
        ? `spiffe://${TD}/ns/x/sa/nothing-to-see`
        : `spiffe://${TD}/ns/db/sa/db`,
  }));
}

async function startNode(name: NodeName, svid: Svid, path: string, port = 0): Promise<TestNode> {
  const store = AuditStore.open({ path });
  const witness = new Witness({
    sink: { record: (e) => void store.append([e]) },
    store,
    bundles,
    selfId: idOf(name),
  });
  const server = await startApiServer({
    store,
    daemon: new FakeDaemon(),
    witness: { submit: (e, s) => witness.submit(e, s), list: (id, l) => witness.list(id, l) },
    unix: false,
    followPollMs: 50,
    tcp: {
      host: '127.0.0.1',
      port,
      svid: () => ({ certChainPem: svid.chainPem, keyPem: svid.keyPem }),
      bundles,
      allow: [RELAY_ID, ADMIN_ID, ...NODES.map(idOf)],
    },
  });
  return { name, svid, path, store, server, witness, port: server.tcpPort! };
}

function addr(n: TestNode): string {
  return `127.0.0.1:${n.port}`;
}

/** Submissions over mTLS, with node n's SVID, to the other nodes and the relay. */
function witnessesOf(n: TestNode): HeadSubmission[] {
  const targets = [...nodes.values()].filter((m) => m.name !== n.name).map(addr);
  targets.push(`127.0.0.1:${relay.port}`);
  const witnesses: HeadSubmission[] = targets.map((target) => ({
    target,
    async submit(env) {
      const c = new ApiClient({ address: target, tls: tlsOf(n.svid), timeoutMs: 5000 });
      try {
        return await c.submitHead(env);
      } finally {
        c.close();
      }
    },
  }));
  return witnesses;
}

/** A node's head publisher. */
function publisherOf(n: TestNode): HeadPublisher {
  return new HeadPublisher({
    store: n.store,
    spiffeId: idOf(n.name),
    node: n.name,
    svid: () => ({ chainPem: n.svid.chainPem, keyPem: n.svid.keyPem }),
    witnesses: witnessesOf(n),
  });
}

/** Resolves once cond() holds (checked every 20 ms, for at most 10 s). */
async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  if (!cond()) throw new Error('condition not reached in 10 s');
}

function captureIo(signal?: AbortSignal) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    env: {},
    ...(signal ? { signal } : {}),
  };
  return { io, out, err };
}

const tlsFlags = () => [
  '--tls-cert',
  join(dir, 'admin.crt'),
  '--tls-key',
  join(dir, 'admin.key'),
  '--tls-bundle',
  join(dir, 'ca.pem'),
];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-relay-'));
  ca = await DevCa.create(TD);
  admin = await ca.issue(ADMIN_ID);
  submitter = await ca.issue(SUBMITTER_ID);
  writeFileSync(join(dir, 'admin.crt'), admin.chainPem);
  writeFileSync(join(dir, 'admin.key'), admin.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'ca.pem'), ca.caPem);
  const relaySvid = await ca.issue(RELAY_ID);
  writeFileSync(join(dir, 'relay.crt'), relaySvid.chainPem);
  writeFileSync(join(dir, 'relay.key'), relaySvid.keyPem, { mode: 0o600 });
  for (const name of NODES) {
    const n = await startNode(name, await ca.issue(idOf(name)), join(dir, `${name}.db`));
    n.store.append(eventsFor(name, 200));
    nodes.set(name, n);
  }
  relay = await startRelay({
    listen: { host: '127.0.0.1', port: 0 },
    tls: {
      certFile: join(dir, 'relay.crt'),
      keyFile: join(dir, 'relay.key'),
      bundleFile: join(dir, 'ca.pem'),
    },
    // query clients only; the nodes (pinned below) and SUBMITTER_ID may submit heads and nothing else
    allow: [ADMIN_ID],
    witnessAllow: [SUBMITTER_ID],
    nodes: () => [...nodes.values()].map((n) => ({ name: n.name, address: addr(n), spiffeId: idOf(n.name) })),
    auditPath: join(dir, 'relay.db'),
    nodeDeadlineMs: 3000,
    followRetryMs: 200,
    // 5 refusal rows per submitter, (practically) never refilled here; summaries every 300 ms
    witness: { refusalLimit: { burst: 5, perMinute: 0.001, summaryIntervalMs: 300 } },
  });
}, 60_000);

afterAll(async () => {
  await relay?.close();
  for (const n of nodes.values()) {
    await n.server.close();
    n.store.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('meshauth-relay over three nodes', () => {
  const relayClient = () =>
    new ApiClient({
      address: `127.0.0.1:${relay.port}`,
      tls: { ...tlsOf(admin), serverSpiffeId: RELAY_ID },
      timeoutMs: 5000,
    });

  it('answers a cluster-wide query merged by time, every event naming its node', async () => {
    const c = relayClient();
    try {
      const all: { origin: string; atMs: number; seq: number }[] = [];
      let token = '';
      for (;;) {
        const p = await c.queryEvents({ pageSize: 250, pageToken: token, filter: { outcome: 'failure' } });
        expect(p.partial).toBe(false);
        expect(p.nodes.map((n) => [n.node, n.ok])).toEqual(NODES.map((n) => [n, true]));
        all.push(...p.events);
        if (!p.nextPageToken) break;
        token = p.nextPageToken;
      }
      // 40 failures per node (every fifth of 200), all of them, in time order
      expect(all).toHaveLength(120);
      expect(new Set(all.map((e) => e.origin))).toEqual(new Set(NODES));
      for (let i = 1; i < all.length; i++) expect(all[i]!.atMs).toBeGreaterThanOrEqual(all[i - 1]!.atMs);
      // page through in small pages: the same events, none twice
      const small: string[] = [];
      token = '';
      do {
        const p = await c.queryEvents({ pageSize: 7, pageToken: token, filter: { outcome: 'failure' } });
        small.push(...p.events.map((e) => `${e.origin}/${e.seq}`));
        token = p.nextPageToken;
      } while (token);
      expect(small).toEqual(all.map((e) => `${e.origin}/${e.seq}`));
    } finally {
      c.close();
    }
  });

  it('CLI --relay prints the origin of every event', async () => {
    const { io, out, err } = captureIo();
    const code = await run(
      ['--relay', `127.0.0.1:${relay.port}`, ...tlsFlags(), 'events', '-n', '6', '-o', 'json'],
      io,
    );
    expect(code).toBe(0);
    expect(err.join('')).toBe('');
    const lines = out
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { origin: string; atMs: number });
    expect(lines).toHaveLength(6);
    expect(new Set(lines.map((l) => l.origin))).toEqual(new Set(NODES));
  });

  it('follows every node at once', { timeout: 15_000 }, async () => {
    const c = relayClient();
    const ctl = new AbortController();
    const got: string[] = [];
    try {
      const stream = c.followEvents({}, ctl.signal);
      const it = stream[Symbol.asyncIterator]();
      // a generator starts its call on the first next(); the relay then opens one stream per node
      let pending = it.next();
      await Promise.all(NODES.map((n) => waitFor(() => nodes.get(n)!.store['listeners'].size > 0)));
      nodes
        .get('node-b')!
        .store.append([{ type: 'reauth', outcome: 'info', reason: 'follow-b', atMs: Date.now() }]);
      nodes
        .get('node-c')!
        .store.append([{ type: 'reauth', outcome: 'info', reason: 'follow-c', atMs: Date.now() }]);
      while (got.length < 2) {
        const r = await pending;
        pending = it.next();
        if (r.done) break;
        if (r.value.seq > 0) got.push(`${r.value.origin}:${r.value.reason}`);
      }
    } finally {
      ctl.abort();
      c.close();
    }
    expect(got.sort()).toEqual(['node-b:follow-b', 'node-c:follow-c']);
  });

  it(
    "resumes a follow exactly after each node's cursor (after_seq_by_node, then after_seq)",
    { timeout: 15_000 },
    async () => {
      const last = Object.fromEntries(NODES.map((n) => [n, nodes.get(n)!.store.lastSeq()])) as Record<
        NodeName,
        number
      >;
      const c = relayClient();
      const ctl = new AbortController();
      const got: string[] = [];
      try {
        // the client saw all but the last 3 events of node-a and the last 1 of node-b (named), and
        // all but the last 2 of node-c (after_seq, for every node not named)
        const stream = c.followEvents(
          {
            afterSeqByNode: { 'node-a': last['node-a'] - 3, 'node-b': last['node-b'] - 1 },
            afterSeq: last['node-c'] - 2,
          },
          ctl.signal,
        );
        const it = stream[Symbol.asyncIterator]();
        let pending = it.next();
        await Promise.all(NODES.map((n) => waitFor(() => nodes.get(n)!.store['listeners'].size > 0)));
        // one live event on node-b and node-c closes their window (a node streams in seq order);
        // node-a's trail is left as the witness tests below expect it
        for (const n of ['node-b', 'node-c'] as const)
          nodes.get(n)!.store.append([{ type: 'reauth', outcome: 'info', reason: 'live', atMs: Date.now() }]);
        let live = 0;
        while (live < 2 || got.filter((g) => g.startsWith('node-a:')).length < 3) {
          const r = await pending;
          if (r.done) break;
          pending = it.next();
          if (r.value.seq === 0) continue;
          const at = `${r.value.origin}:${r.value.seq - last[r.value.origin as NodeName]}`;
          if (r.value.reason === 'live') live++;
          else got.push(at);
        }
      } finally {
        ctl.abort();
        c.close();
      }
      expect(got.sort()).toEqual(['node-a:-1', 'node-a:-2', 'node-a:0', 'node-b:0', 'node-c:-1', 'node-c:0']);
    },
  );

  it('refuses a follow cursor that is not a seq', async () => {
    const c = relayClient();
    try {
      const stream = c.followEvents({ afterSeqByNode: { '': 5 } }, new AbortController().signal);
      await expect(stream[Symbol.asyncIterator]().next()).rejects.toThrow(/after_seq_by_node/);
    } finally {
      c.close();
    }
  });

  it('keeps query clients and nodes submitting heads apart: neither list reaches the other service', async () => {
    const at = `127.0.0.1:${relay.port}`;
    const a = nodes.get('node-a')!;
    const head = publisherOf(a).signNow()!;
    const as = (svid: Svid) =>
      new ApiClient({ address: at, tls: { ...tlsOf(svid), serverSpiffeId: RELAY_ID }, timeoutMs: 5000 });
    const adminC = as(admin);
    const nodeC = as(a.svid);
    const extraC = as(submitter);
    try {
      // a query client cannot submit a head, even a correctly signed one
      await expect(adminC.submitHead(head)).rejects.toMatchObject({ grpcCode: 7 });
      await expect(adminC.submitHead(head)).rejects.toThrow(/query client/);
      // ... but reads the heads the relay witnessed
      expect(Array.isArray(await adminC.listWitnessedHeads(idOf('node-a')))).toBe(true);
      // a node (pinned in the node list) submits, and can neither query nor list
      expect(await nodeC.submitHead(head)).toMatchObject({ accepted: true });
      await expect(nodeC.queryEvents({ pageSize: 1 })).rejects.toThrow(/may only submit audit heads/);
      await expect(nodeC.listWitnessedHeads(idOf('node-a'))).rejects.toMatchObject({ grpcCode: 7 });
      // an ID on --witness-allow reaches SubmitHead (refused on the head's merits, not the caller)
      expect(await extraC.submitHead(head)).toMatchObject({ accepted: false, reason: 'wrong-node' });
      await expect(extraC.status()).rejects.toMatchObject({ grpcCode: 7 });
    } finally {
      for (const c of [adminC, nodeC, extraC]) c.close();
    }
  });

  it('does not let a node fill its trail with refused heads: 5 rows, then one summary with the count', async () => {
    const b = nodes.get('node-b')!;
    const good = publisherOf(b).signNow()!;
    const lines = good.note.split('\n');
    lines[1] = String(Number(lines[1]) + 1000); // the signature no longer covers the text
    const forged = { ...good, note: lines.join('\n') };
    const c = new ApiClient({
      address: `127.0.0.1:${relay.port}`,
      tls: { ...tlsOf(b.svid), serverSpiffeId: RELAY_ID },
      timeoutMs: 5000,
    });
    try {
      // every caller still learns why its head was refused
      for (let i = 0; i < 20; i++)
        expect(await c.submitHead(forged)).toMatchObject({ accepted: false, reason: 'bad-signature' });
    } finally {
      c.close();
    }
    const trail = AuditStore.open({ path: join(dir, 'relay.db'), readonly: true });
    try {
      const fromB = () =>
        trail
          .query({ types: ['head-rejected'], identity: idOf('node-b'), limit: 1000 })
          .filter((e) => e.remoteId === idOf('node-b'));
      await waitFor(() => fromB().some((e) => e.reason === 'rate-limited'));
      const rows = fromB();
      expect(rows.filter((e) => e.reason === 'bad-signature')).toHaveLength(5);
      const summary = rows.filter((e) => e.reason === 'rate-limited');
      expect(summary).toHaveLength(1);
      expect(summary[0]!.details).toMatchObject({ refused: 15, reasons: { 'bad-signature': 15 } });
    } finally {
      trail.close();
    }
  });

  it('marks the answer partial when a node is down, and names it', async () => {
    const c = nodes.get('node-c')!;
    await c.server.close();
    try {
      const client = relayClient();
      try {
        const p = await client.queryEvents({ pageSize: 1000, filter: { outcome: 'failure' } });
        expect(p.partial).toBe(true);
        const down = p.nodes.find((n) => n.node === 'node-c')!;
        expect(down).toMatchObject({ ok: false, reason: 'unreachable' });
        expect(p.events.every((e) => e.origin !== 'node-c')).toBe(true);
        expect(p.events.filter((e) => e.origin === 'node-a')).toHaveLength(40);
        const st = await client.status();
        expect(st.partial).toBe(true);
      } finally {
        client.close();
      }
      const { io, err } = captureIo();
      expect(await run(['--relay', `127.0.0.1:${relay.port}`, ...tlsFlags(), 'events', '-n', '5'], io)).toBe(
        0,
      );
      expect(err.join('')).toMatch(/PARTIAL: node node-c is missing from this answer \(unreachable/);
    } finally {
      nodes.set(
        'node-c',
        await startNode('node-c', c.svid, c.path, c.port).catch(() => startNode('node-c', c.svid, c.path)),
      );
      c.store.close();
    }
  });
});

describe('witnessed audit heads', () => {
  it('heads signed by node-a are witnessed by the other nodes and the relay; forged and replayed ones are refused', async () => {
    const a = nodes.get('node-a')!;
    const pub = publisherOf(a);
    const first = await pub.publish();
    expect(first!.results.map((r) => r.accepted)).toEqual([true, true, true]);
    a.store.append(eventsFor('node-a', 100, 200));
    const second = await pub.publish();
    expect(second!.results.every((r) => r.accepted)).toBe(true);
    // node-b replays node-a's older head under its own mTLS identity: wrong node
    const b = nodes.get('node-b')!;
    const old = pub.signNow()!;
    const cb = new ApiClient({ address: addr(nodes.get('node-c')!), tls: tlsOf(b.svid), timeoutMs: 5000 });
    try {
      expect(await cb.submitHead(old)).toMatchObject({ accepted: false, reason: 'wrong-node' });
    } finally {
      cb.close();
    }
    // node-a itself submits a head older than one already witnessed: replayed
    const ca2 = new ApiClient({ address: addr(nodes.get('node-c')!), tls: tlsOf(a.svid), timeoutMs: 5000 });
    try {
      const stale = new HeadPublisher({
        store: AuditStore.open({ path: join(dir, 'stale.db') }),
        spiffeId: idOf('node-a'),
        node: 'node-a',
        svid: () => ({ chainPem: a.svid.chainPem, keyPem: a.svid.keyPem }),
        witnesses: [],
      }).signNow()!;
      expect(await ca2.submitHead(stale)).toMatchObject({ accepted: false, reason: 'replayed' });
    } finally {
      ca2.close();
    }
    const heads = nodes.get('node-c')!.witness.list(idOf('node-a'));
    expect(heads.map((h) => Number(h.note.split('\n')[1]))).toEqual([200, 300]);
    const { io, out } = captureIo();
    const targets = [addr(nodes.get('node-b')!), addr(nodes.get('node-c')!), `127.0.0.1:${relay.port}`].join(
      ',',
    );
    const code = await run(
      [...tlsFlags(), 'audit', 'verify', '--db', a.path, '--node-id', idOf('node-a'), '--witnesses', targets],
      io,
    );
    expect(out.join('')).toMatch(/matches 2 witnessed heads \(up to seq 300\) from 3\/3 witnesses/);
    expect(code).toBe(0);
  });

  it('detects a trail rewritten by root with recomputed hashes, even with new heads signed by the node', async () => {
    const a = nodes.get('node-a')!;
    // root on node-a rebuilds the trail: the same events up to seq 250, different ones after,
    // every hash recomputed, more events appended, and the forged head signed with node-a's key
    const forgedPath = join(dir, 'forged.db');
    const forged = AuditStore.open({ path: forgedPath });
    forged.append(eventsFor('node-a', 200));
    forged.append(eventsFor('node-a', 150, 200, { fromSeq: 251 }));
    expect(forged.verifyChain().ok).toBe(true);
    const pub = new HeadPublisher({
      store: forged,
      spiffeId: idOf('node-a'),
      node: 'node-a',
      svid: () => ({ chainPem: a.svid.chainPem, keyPem: a.svid.keyPem }),
      witnesses: witnessesOf(a),
    });
    const r = await pub.publish();
    // seq 350 is newer than anything witnessed: the witnesses take it (they hold no rows)...
    expect(r!.results.every((x) => x.accepted)).toBe(true);
    forged.close();
    const victimCopy = join(dir, 'node-a-rewritten.db');
    copyFileSync(forgedPath, victimCopy);
    // ...but the heads witnessed before do not match the rewritten rows
    const { io, out } = captureIo();
    const targets = [addr(nodes.get('node-b')!), addr(nodes.get('node-c')!), `127.0.0.1:${relay.port}`].join(
      ',',
    );
    const code = await run(
      [
        ...tlsFlags(),
        'audit',
        'verify',
        '--db',
        victimCopy,
        '--node-id',
        idOf('node-a'),
        '--witnesses',
        targets,
        '-o',
        'json',
      ],
      io,
    );
    expect(code).toBe(1);
    const rep = JSON.parse(out.join('')) as {
      ok: boolean;
      problem: { kind: string; seq: number; range: number[] };
    };
    expect(rep.ok).toBe(false);
    expect(rep.problem).toMatchObject({ kind: 'rewritten', seq: 300, range: [201, 300] });
  });

  it('a witness that lies about a head cannot frame an honest node', async () => {
    const b = nodes.get('node-b')!;
    expect((await publisherOf(b).publish())!.results.every((r) => r.accepted)).toBe(true);
    const honestCopy = join(dir, 'node-b-honest.db');
    b.store.checkpoint();
    copyFileSync(b.path, honestCopy);
    // a witness that serves node-b's real heads with another hash
    const liarSvid = await ca.issue(idOf('node-liar'));
    const real = nodes.get('node-c')!.witness.list(idOf('node-b'));
    expect(real).toHaveLength(1);
    const liar = await startApiServer({
      store: AuditStore.open({ path: join(dir, 'liar.db') }),
      daemon: new FakeDaemon(),
      unix: false,
      witness: {
        submit: () => ({ accepted: false, reason: 'not-allowed', message: '' }),
        list: () =>
          real.map((h) => ({
            ...h,
            note: h.note.replace(/\n[A-Za-z0-9+/]{43}=\n/, `\n${Buffer.alloc(32, 9).toString('base64')}\n`),
          })),
      },
      tcp: {
        host: '127.0.0.1',
        port: 0,
        svid: () => ({ certChainPem: liarSvid.chainPem, keyPem: liarSvid.keyPem }),
        bundles,
        allow: [ADMIN_ID],
      },
    });
    try {
      const { io, out } = captureIo();
      const targets = [`127.0.0.1:${liar.tcpPort}`, addr(nodes.get('node-c')!)].join(',');
      const code = await run(
        [
          ...tlsFlags(),
          'audit',
          'verify',
          '--db',
          honestCopy,
          '--node-id',
          idOf('node-b'),
          '--witnesses',
          targets,
        ],
        io,
      );
      const text = out.join('');
      expect(text).toMatch(/head refused \(bad-signature\)/);
      expect(text).toMatch(/audit trail matches 1 witnessed heads .* from 2\/2 witnesses/);
      expect(code).toBe(0);
    } finally {
      await liar.close();
    }
  });
});
