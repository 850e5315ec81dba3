import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EventMsg, EventPage, QueryEventsRequestMsg } from '../../../src/api/index.js';
import {
  Relay,
  RelayTokenError,
  decodeRelayToken,
  parseNodeList,
  staticNodes,
  type NodeApi,
  type RelayNode,
} from '../../../src/relay/index.js';

const HASH = 'ab'.repeat(32);

function ev(seq: number, atMs: number, extra: Partial<EventMsg> = {}): EventMsg {
  return {
    seq,
    atMs,
    type: 'handshake-succeeded',
    outcome: 'success',
    reason: '',
    localId: '',
    remoteId: '',
    node: '',
    direction: '',
    detailsJson: '',
    prevHash: HASH,
    hash: HASH,
    origin: '',
    ...extra,
  };
}

/** A node answering from an in-memory list with the node API's paging (tokens s<seq>). */
function memoryNode(events: EventMsg[]): NodeApi {
  return {
    async queryEvents(req: QueryEventsRequestMsg): Promise<EventPage> {
      const size = req.pageSize || 100;
      const cursor = req.pageToken ? Number(req.pageToken.slice(1)) : undefined;
      let list = req.newestFirst ? [...events].reverse() : events;
      if (cursor !== undefined)
        list = list.filter((e) => (req.newestFirst ? e.seq < cursor : e.seq > cursor));
      const page = list.slice(0, size);
      const more = list.length > size;
      return { events: page, nextPageToken: more ? `s${page.at(-1)!.seq}` : '', nodes: [], partial: false };
    },
    followEvents: () => (async function* () {})(),
    listEntries: async () => [],
    status: async () => ({}) as never,
    close: () => {},
  };
}

function relayOver(apis: Record<string, NodeApi>, deadlineMs = 5_000): Relay {
  const nodes: RelayNode[] = Object.keys(apis).map((name) => ({ name, address: `${name}:4251` }));
  return new Relay({ nodes: () => nodes, connect: (n) => apis[n.name]!, nodeDeadlineMs: deadlineMs });
}

describe('Relay.queryEvents', () => {
  it('merges nodes by time, names the node on every event, and pages without loss or repeats', async () => {
    const a = Array.from({ length: 25 }, (_, i) => ev(i + 1, 1000 + i * 3));
    const b = Array.from({ length: 10 }, (_, i) => ev(i + 1, 1001 + i * 7));
    const relay = relayOver({ a: memoryNode(a), b: memoryNode(b) });
    for (const newestFirst of [false, true]) {
      const seen: string[] = [];
      const times: number[] = [];
      let token = '';
      do {
        const p = await relay.queryEvents({ pageSize: 4, pageToken: token, newestFirst });
        expect(p.partial).toBe(false);
        seen.push(...p.events.map((e) => `${e.origin}${e.seq}`));
        times.push(...p.events.map((e) => e.atMs));
        token = p.nextPageToken;
      } while (token);
      expect(seen).toHaveLength(35);
      expect(new Set(seen).size).toBe(35);
      const sorted = [...times].sort((x, y) => (newestFirst ? y - x : x - y));
      expect(times).toEqual(sorted);
    }
  });

  it('isolates a node that sends malformed events and one that stalls past its deadline', async () => {
    const good = memoryNode([ev(1, 10), ev(2, 20)]);
    const malformed = memoryNode([ev(1, 15), ev(2, 16, { hash: 'not-a-hash' })]);
    const stalled: NodeApi = { ...memoryNode([]), queryEvents: () => new Promise<never>(() => {}) };
    const relay = relayOver({ good, malformed, stalled }, 200);
    const p = await relay.queryEvents({ pageSize: 10 });
    expect(p.events.map((e) => `${e.origin}${e.seq}`)).toEqual(['good1', 'good2']);
    expect(p.partial).toBe(true);
    expect(p.nodes.map((n) => [n.node, n.ok, n.reason])).toEqual([
      ['good', true, ''],
      ['malformed', false, 'malformed'],
      ['stalled', false, 'deadline'],
    ]);
    expect(p.nodes[1]!.message).toMatch(/seq 2: hash/);
    // the answer says more may come: the missing nodes are asked again with the next page
    expect(p.nextPageToken).not.toBe('');
  });

  it('pages a node named like an Object property, and a token naming __proto__ sets no prototype', async () => {
    const a = Array.from({ length: 5 }, (_, i) => ev(i + 1, 1000 + i));
    const relay = relayOver({ constructor: memoryNode(a), t: memoryNode(a) });
    const seen: string[] = [];
    let token = '';
    do {
      const p = await relay.queryEvents({ pageSize: 3, pageToken: token });
      seen.push(...p.events.map((e) => `${e.origin}${e.seq}`));
      token = p.nextPageToken;
    } while (token && seen.length < 100);
    expect(seen.sort()).toEqual(
      [...a.map((e) => `constructor${e.seq}`), ...a.map((e) => `t${e.seq}`)].sort(),
    );
    const evil = `r1.${Buffer.from('{"__proto__":{"t":"s4"}}').toString('base64url')}`;
    const cursors = decodeRelayToken(evil);
    expect(Object.getPrototypeOf(cursors)).toBeNull();
    expect(Object.keys(cursors)).toEqual(['__proto__']);
    // node "t" is not steered by the prototype: it starts from its first event
    const p = await relay.queryEvents({ pageSize: 10, pageToken: evil });
    expect(p.events.filter((e) => e.origin === 't').map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it('refuses a page token it did not issue', async () => {
    const relay = relayOver({ a: memoryNode([]) });
    await expect(relay.queryEvents({ pageToken: 's12' })).rejects.toBeInstanceOf(RelayTokenError);
    await expect(relay.queryEvents({ pageToken: 'r1.bm90LWpzb24' })).rejects.toBeInstanceOf(RelayTokenError);
  });
});

describe('Relay.followEvents', () => {
  it('stops reading a node that streams without end while the client does not read (bounded queue)', async () => {
    const MAX = 20;
    let produced = 0;
    let reachedMax!: () => void;
    const atMax = new Promise<void>((r) => (reachedMax = r));
    const endless: NodeApi = {
      ...memoryNode([]),
      followEvents: () =>
        (async function* () {
          for (;;) {
            produced++;
            if (produced === MAX) reachedMax();
            yield ev(produced, produced);
            await new Promise<void>((r) => setImmediate(r));
          }
        })(),
    };
    const nodes: RelayNode[] = [{ name: 'endless', address: 'endless:4251' }];
    const relay = new Relay({ nodes: () => nodes, connect: () => endless, followQueueMax: MAX });
    const ctl = new AbortController();
    const follow = relay.followEvents(undefined, ctl.signal);
    expect((await follow.next()).value).toMatchObject({ seq: 1, origin: 'endless' });
    await atMax;
    // settle points: each event the node writes takes one macrotask; 200 of them pass here
    for (let i = 0; i < 200; i++) await new Promise<void>((r) => setImmediate(r));
    expect(produced).toBeLessThanOrEqual(MAX + 1);
    // the client reading drains the queue and the node is read again, in order, without loss
    const seqs: number[] = [];
    for (let i = 0; i < 3 * MAX; i++) seqs.push((await follow.next()).value!.seq);
    expect(seqs).toEqual(Array.from({ length: 3 * MAX }, (_, i) => i + 2));
    ctl.abort();
    await follow.return(undefined);
    relay.close();
  });
});

describe('parseNodeList', () => {
  it('reads name=host:port[=spiffe-id] items and refuses anything else', () => {
    expect(
      parseNodeList('a=10.0.0.1:4251\n# comment\nb=[::1]:4251=spiffe://td/node/b, c=node-c.local:1'),
    ).toEqual([
      { name: 'a', address: '10.0.0.1:4251' },
      { name: 'b', address: '[::1]:4251', spiffeId: 'spiffe://td/node/b' },
      { name: 'c', address: 'node-c.local:1' },
    ]);
    expect(() => parseNodeList('a=host')).toThrow(/name=host:port/);
    expect(() => parseNodeList('a=h:1\na=h:2')).toThrow(/twice/);
    expect(() => parseNodeList('a=h:99999')).toThrow(/the port must be between 1 and 65535 \(got 99999\)/);
    expect(() => parseNodeList('a=h:0')).toThrow(/the port must be between 1 and 65535 \(got 0\)/);
    expect(() => parseNodeList('a=h:1=spiffe://UPPER.td/n')).toThrow(
      /"a=h:1=spiffe:\/\/UPPER.td\/n".*SPIFFE ID/,
    );
  });
});

describe('staticNodes: the --nodes-file changed while the relay runs', () => {
  it('regression: a FIFO, a device or an oversized file in its place keeps the last good list, at once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-relay-nodes-'));
    try {
      const file = join(dir, 'nodes');
      writeFileSync(file, 'a=10.0.0.1:4251\n');
      const errors: string[] = [];
      const nodes = staticNodes([], file, (err) => errors.push(err.message));
      expect(nodes()).toEqual([{ name: 'a', address: '10.0.0.1:4251' }]);
      const put = (make: (p: string) => void, mtimeS: number) => {
        rmSync(file, { force: true });
        make(file);
        if (!lstatSync(file).isSymbolicLink()) utimesSync(file, mtimeS, mtimeS);
      };
      // before: readFileSync of a FIFO blocked the relay's only thread for ever; /dev/zero was
      // read without end
      put((p) => execFileSync('mkfifo', [p]), 1_000);
      expect(nodes()).toEqual([{ name: 'a', address: '10.0.0.1:4251' }]);
      put((p) => symlinkSync('/dev/zero', p), 0);
      expect(nodes()).toEqual([{ name: 'a', address: '10.0.0.1:4251' }]);
      put((p) => writeFileSync(p, `b=10.0.0.2:4251 ${'#'.repeat(1024 * 1024)}\n`), 2_000);
      expect(nodes()).toEqual([{ name: 'a', address: '10.0.0.1:4251' }]);
      expect(errors).toEqual([
        'not a regular file (a FIFO)',
        'not a regular file (a device)',
        `larger than ${1024 * 1024} bytes (${1024 * 1024 + 17})`,
      ]);
      put((p) => writeFileSync(p, 'b=10.0.0.2:4251\n'), 3_000);
      expect(nodes()).toEqual([{ name: 'b', address: '10.0.0.2:4251' }]);

      // at start, the same refusals name --nodes-file
      put((p) => execFileSync('mkfifo', [p]), 4_000);
      expect(() => staticNodes([], file)).toThrow(`--nodes-file ${file}: not a regular file (a FIFO)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
