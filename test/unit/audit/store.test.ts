import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditStore,
  SCHEMA_VERSION,
  canonicalJson,
  migrate,
  rowHash,
  type AuditEventInput,
  type AuditQuery,
  type StoredAuditEvent,
} from '../../../src/audit/index.js';

let dir: string;
let path: string;
let store: AuditStore;

const ev = (i: number, extra: Partial<AuditEventInput> = {}): AuditEventInput => ({
  type: i % 2 ? 'handshake-succeeded' : 'handshake-failed',
  outcome: i % 2 ? 'success' : 'failure',
  reason: i % 2 ? undefined : 'svid-untrusted',
  localId: `spiffe://a.test/ns/x/sa/w${i % 3}`,
  remoteId: `spiffe://b.test/ns/y/sa/w${i % 5}`,
  node: `node-${i % 4}`,
  direction: 'client',
  atMs: 1_700_000_000_000 + i * 1000,
  details: { durationMs: i, serials: ['01', '02'] },
  ...extra,
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'meshauth-audit-'));
  path = join(dir, 'sub', 'audit.db');
  store = AuditStore.open({ path });
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function raw(): Database.Database {
  return new Database(path);
}

describe('AuditStore', () => {
  it('creates the schema with a version and WAL mode', () => {
    const db = raw();
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.prepare('SELECT version FROM schema_version').get()).toEqual({ version: SCHEMA_VERSION });
    const idx = db
      .prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'`)
      .all();
    expect(idx.map((r) => (r as { name: string }).name).sort()).toEqual([
      'events_local',
      'events_node',
      'events_reason',
      'events_remote',
      'events_ts',
    ]);
    db.close();
  });

  /** A database at an older schema version holding rows written the way that version wrote them. */
  function legacyDb(version: number, rows: AuditEventInput[]): void {
    store.close();
    rmSync(path, { force: true });
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    migrate(db, path, version);
    const ins = db.prepare(
      `INSERT INTO events (seq, ts, type, outcome, reason, local_id, remote_id, node, direction, details, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    let prev: Buffer = Buffer.alloc(32);
    rows.forEach((e, i) => {
      const f = {
        seq: i + 1,
        prevHash: prev,
        ts: e.atMs!,
        type: e.type,
        outcome: e.outcome ?? null,
        reason: e.reason ?? null,
        localId: e.localId ?? null,
        remoteId: e.remoteId ?? null,
        node: e.node ?? null,
        direction: e.direction ?? null,
        details: e.details ? canonicalJson(e.details) : null,
      };
      const h = rowHash(f);
      ins.run(
        f.seq,
        f.ts,
        f.type,
        f.outcome,
        f.reason,
        f.localId,
        f.remoteId,
        f.node,
        f.direction,
        f.details,
        prev,
        h,
      );
      prev = h;
    });
    db.prepare('UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1').run(rows.length, prev);
    db.close();
  }

  for (const version of [1, 2]) {
    it(`migrates a version ${version} database in place: same events, same chain, names referenced`, () => {
      // event 5 arrives 4 s late (its time is older than event 4's)
      const rows = Array.from({ length: 12 }, (_, i) =>
        ev(i + 1, i === 4 ? { atMs: 1_700_000_000_000 } : {}),
      );
      legacyDb(version, rows);
      const ro = () => AuditStore.open({ path, readonly: true });
      expect(ro).toThrow(new RegExp(`schema version ${version} is older`));
      store = AuditStore.open({ path });
      const check = raw();
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      const idx = check
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'`)
        .all()
        .map((r) => (r as { name: string }).name);
      expect(idx).not.toContain('events_type');
      // 3 local ids + 5 remote ids + 4 nodes, each stored once
      expect(check.prepare('SELECT count(*) AS n FROM names').get()).toEqual({ n: 12 });
      expect(check.prepare('SELECT lateness_ms FROM chain_head').get()).toEqual({ lateness_ms: 4000 });
      check.close();
      expect(store.verifyChain()).toMatchObject({ ok: true, checked: 12 });
      const got = store.query({ limit: 100 });
      expect(got.map((e) => [e.seq, e.localId, e.remoteId, e.node, e.atMs])).toEqual(
        rows.map((e, i) => [i + 1, e.localId, e.remoteId, e.node, e.atMs]),
      );
      expect(store.query({ reason: 'svid-untrusted' }).map((e) => e.seq)).toEqual([2, 4, 6, 8, 10, 12]);
      // the chain continues across the migration
      store.append([ev(13)]);
      expect(store.verifyChain()).toMatchObject({ ok: true, checked: 13 });
    });
  }

  it('refuses a database from a newer schema', () => {
    store.close();
    const db = raw();
    db.prepare('UPDATE schema_version SET version = 99').run();
    db.close();
    expect(() => AuditStore.open({ path })).toThrow(/schema version 99 is newer/);
    expect(() => AuditStore.open({ path, readonly: true })).toThrow(/schema version 99 is newer/);
    store = AuditStore.open({ path: join(dir, 'other.db') });
  });

  it('appends with consecutive seqs and chained hashes, round-tripping the fields', () => {
    const a = store.append([ev(1), ev(2)]);
    const b = store.append([ev(3)]);
    expect([...a, ...b].map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(a[0]!.prevHash).toBe('0'.repeat(64));
    expect(a[1]!.prevHash).toBe(a[0]!.hash);
    expect(b[0]!.prevHash).toBe(a[1]!.hash);
    const got = store.query();
    expect(got).toEqual([...a, ...b]);
    expect(got[1]).toMatchObject({
      type: 'handshake-failed',
      outcome: 'failure',
      reason: 'svid-untrusted',
      node: 'node-2',
      details: { durationMs: 2, serials: ['01', '02'] },
    });
    expect(store.lastSeq()).toBe(3);
    expect(store.verifyChain()).toMatchObject({ ok: true, checked: 3, firstSeq: 1, lastSeq: 3 });
  });

  it('persists across reopen and continues the chain', () => {
    store.append([ev(1), ev(2)]);
    store.close();
    store = AuditStore.open({ path });
    const [c] = store.append([ev(3)]);
    expect(c!.seq).toBe(3);
    expect(store.verifyChain().ok).toBe(true);
  });

  it('filters by identity (exact and glob), node, outcome, reason, type, time, and pages by seq', () => {
    store.append(Array.from({ length: 60 }, (_, i) => ev(i + 1)));
    const w1 = store.query({ identity: 'spiffe://a.test/ns/x/sa/w1', limit: 1000 });
    expect(w1.length).toBe(20);
    expect(w1.every((e) => e.localId === 'spiffe://a.test/ns/x/sa/w1')).toBe(true);
    const remote = store.query({ identity: 'spiffe://b.test/ns/y/sa/w4', limit: 1000 });
    expect(remote.length).toBe(12);
    expect(store.query({ identity: 'spiffe://b.test/*', limit: 1000 }).length).toBe(60);
    expect(store.query({ identity: 'spiffe://a.test/ns/x/sa/w[12]', limit: 1000 }).length).toBe(40);
    const combo = store.query({ node: 'node-1', outcome: 'success', limit: 1000 });
    expect(combo.length).toBe(15);
    expect(combo.every((e) => e.node === 'node-1' && e.outcome === 'success')).toBe(true);
    expect(store.query({ reason: 'svid-untrusted', limit: 1000 }).length).toBe(30);
    expect(store.query({ types: ['handshake-failed'], limit: 1000 }).length).toBe(30);
    const t0 = 1_700_000_000_000;
    const range = store.query({ sinceMs: t0 + 10_000, untilMs: t0 + 20_000 });
    expect(range.map((e) => e.seq)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    const p1 = store.query({ limit: 25 });
    const p2 = store.query({ limit: 25, afterSeq: p1.at(-1)!.seq });
    const p3 = store.query({ limit: 25, afterSeq: p2.at(-1)!.seq });
    expect([...p1, ...p2, ...p3].map((e) => e.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(store.query({ newestFirst: true, limit: 3 }).map((e) => e.seq)).toEqual([60, 59, 58]);
    expect(() => store.query({ limit: 0 })).toThrow(/limit must be/);
    expect(() => store.query({ sinceMs: 5, untilMs: 5 })).toThrow(/until/);
  });

  it('returns the same pages whether the scan window or the indexes find the rows', () => {
    store.close();
    store = AuditStore.open({ path, scanWindow: 7 });
    const all = store.append(Array.from({ length: 240 }, (_, i) => ev(i + 1)));
    const t0 = 1_700_000_000_000;
    const queries: AuditQuery[] = [
      { identity: 'spiffe://a.test/ns/x/sa/w1' },
      { identity: 'spiffe://b.test/ns/y/sa/w[03]', outcome: 'failure' },
      { node: 'node-3', outcome: 'success' },
      { reason: 'svid-untrusted', sinceMs: t0 + 50_000, untilMs: t0 + 200_000 },
      { types: ['handshake-failed'], node: 'node-2' },
      { node: 'node-none' },
    ];
    const matches = (q: AuditQuery, e: StoredAuditEvent): boolean => {
      if (q.identity !== undefined) {
        const re = new RegExp(`^${q.identity.replace(/\./g, '\\.').replace(/\*/g, '.*')}$`);
        if (!re.test(e.localId ?? '') && !re.test(e.remoteId ?? '')) return false;
      }
      if (q.node !== undefined && q.node !== e.node) return false;
      if (q.outcome !== undefined && q.outcome !== e.outcome) return false;
      if (q.reason !== undefined && q.reason !== e.reason) return false;
      if (q.types !== undefined && !q.types.includes(e.type)) return false;
      if (q.sinceMs !== undefined && e.atMs < q.sinceMs) return false;
      if (q.untilMs !== undefined && e.atMs >= q.untilMs) return false;
      return true;
    };
    for (const q of queries) {
      const want = all.filter((e) => matches(q, e)).map((e) => e.seq);
      for (const newestFirst of [false, true]) {
        for (const limit of [1, 5, 1000]) {
          const expected = newestFirst ? [...want].reverse().slice(0, limit) : want.slice(0, limit);
          expect(
            store.query({ ...q, newestFirst, limit }).map((e) => e.seq),
            JSON.stringify({ q, newestFirst, limit }),
          ).toEqual(expected);
        }
        // paging with cursors through the whole range
        const got: number[] = [];
        let cursor: number | undefined;
        for (;;) {
          const page = store.query({
            ...q,
            newestFirst,
            limit: 3,
            ...(cursor === undefined ? {} : newestFirst ? { beforeSeq: cursor } : { afterSeq: cursor }),
          });
          got.push(...page.map((e) => e.seq));
          if (page.length < 3) break;
          cursor = page.at(-1)!.seq;
        }
        expect(got).toEqual(newestFirst ? [...want].reverse() : want);
      }
    }
  });

  it('keeps time-bounded queries exact when event times arrive out of order', () => {
    store.close();
    store = AuditStore.open({ path, scanWindow: 11 });
    const t0 = 1_700_000_000_000;
    // deterministic lateness: most events on time, some up to 30 s late
    let x = 12345;
    const rnd = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
    const input = Array.from({ length: 400 }, (_, i) =>
      ev(i + 1, { atMs: t0 + i * 1000 - (rnd() < 0.2 ? Math.floor(rnd() * 30_000) : 0) }),
    );
    store.append(input.slice(0, 200));
    store.close();
    store = AuditStore.open({ path, scanWindow: 11 }); // lateness survives a reopen
    store.append(input.slice(200));
    const all = store.query({ limit: 10_000 });
    for (let k = 0; k < 40; k++) {
      const since = t0 + Math.floor(rnd() * 420_000) - 10_000;
      const until = since + 1000 + Math.floor(rnd() * 60_000);
      for (const q of [
        { sinceMs: since },
        { untilMs: until },
        { sinceMs: since, untilMs: until },
        { sinceMs: since, types: ['handshake-failed' as const] },
        { sinceMs: since, untilMs: until, node: 'node-1' },
      ] as AuditQuery[]) {
        const want = all
          .filter(
            (e) =>
              (q.sinceMs === undefined || e.atMs >= q.sinceMs) &&
              (q.untilMs === undefined || e.atMs < q.untilMs) &&
              (q.types === undefined || q.types.includes(e.type)) &&
              (q.node === undefined || e.node === q.node),
          )
          .map((e) => e.seq);
        for (const newestFirst of [false, true]) {
          for (const limit of [1, 7, 10_000]) {
            expect(
              store.query({ ...q, newestFirst, limit }).map((e) => e.seq),
              JSON.stringify({ q, newestFirst, limit }),
            ).toEqual(newestFirst ? [...want].reverse().slice(0, limit) : want.slice(0, limit));
          }
        }
      }
    }
  });

  it('stores each name once and forgets names of a failed append', () => {
    const fresh = 'spiffe://c.test/ns/new/sa/one';
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    expect(() =>
      store.append([ev(1, { localId: fresh, node: 'node-new' }), ev(2, { details: circular })]),
    ).toThrow();
    const db = raw();
    expect(db.prepare('SELECT count(*) AS n FROM names').get()).toEqual({ n: 0 });
    expect(db.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 0 });
    db.close();
    // the same name again is stored for real this time, not taken from a stale cache
    store.append([ev(3, { localId: fresh, node: 'node-new' }), ev(4, { remoteId: fresh })]);
    expect(store.query({ identity: fresh }).map((e) => e.seq)).toEqual([1, 2]);
    expect(store.query({ node: 'node-new' }).map((e) => e.seq)).toEqual([1]);
    expect(store.query({ identity: 'spiffe://c.test/*' }).map((e) => e.seq)).toEqual([1, 2]);
    expect(store.query({ identity: 'spiffe://never.test/x' })).toEqual([]);
    expect(store.query({ node: 'node-never' })).toEqual([]);
    const check = raw();
    const n = check.prepare('SELECT count(*) AS n FROM names WHERE value = ?').get(fresh);
    expect(n).toEqual({ n: 1 });
    check.close();
    expect(store.verifyChain()).toMatchObject({ ok: true, checked: 2 });
  });

  it('names outlive retention with the same ids, so cached references stay true', () => {
    store.append(Array.from({ length: 10 }, (_, i) => ev(i + 1, { node: `only-${i + 1}` })));
    const idOf = (v: string) => {
      const db = raw();
      const r = db.prepare('SELECT id FROM names WHERE value = ?').get(v) as { id: number } | undefined;
      db.close();
      return r?.id;
    };
    const before = idOf('only-2');
    expect(before).toBeDefined();
    store.prune({ maxRows: 3 });
    expect(store.query({ node: 'only-9' }).map((e) => e.seq)).toEqual([9]);
    expect(store.query({ node: 'only-2' })).toEqual([]);
    // a second connection (as the writer thread holds) appends with its cached ids
    const other = AuditStore.open({ path });
    other.append([ev(11, { node: 'only-2' })]);
    other.close();
    expect(idOf('only-2')).toBe(before);
    expect(store.query({ node: 'only-2' }).map((e) => [e.seq, e.node])).toEqual([[12, 'only-2']]);
    expect(store.verifyChain()).toMatchObject({ ok: true });
  });

  it('detects an edited name at the first row that refers to it', () => {
    store.append(Array.from({ length: 10 }, (_, i) => ev(i + 1)));
    store.close();
    const db = raw();
    db.prepare(`UPDATE names SET value = 'node-9' WHERE value = 'node-3'`).run();
    db.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { seq: 3, kind: 'edited' } });
    store.close();
    const db2 = raw();
    db2.prepare(`DELETE FROM names WHERE value = 'node-2'`).run();
    db2.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { seq: 2, kind: 'edited' } });
    expect(store.query({ limit: 3 })[1]!.node).toMatch(/^<missing name \d+>$/);
  });

  it('detects an edited row at its seq', () => {
    store.append(Array.from({ length: 10 }, (_, i) => ev(i + 1)));
    store.close();
    const db = raw();
    db.prepare(`UPDATE events SET outcome = 'success' WHERE seq = 6`).run();
    db.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { seq: 6, kind: 'edited' } });
  });

  it('detects a rewritten row whose hash was recomputed (broken link at the next seq)', async () => {
    const { rowHash } = await import('../../../src/audit/index.js');
    store.append(Array.from({ length: 10 }, (_, i) => ev(i + 1)));
    store.close();
    const db = raw();
    const r = db.prepare('SELECT * FROM event_rows WHERE seq = 4').get() as Record<string, unknown>;
    const h = rowHash({
      seq: 4,
      prevHash: r['prev_hash'] as Buffer,
      ts: r['ts'] as number,
      type: r['type'] as string,
      outcome: 'success',
      reason: null,
      localId: r['local_id'] as string,
      remoteId: r['remote_id'] as string,
      node: r['node'] as string,
      direction: r['direction'] as string,
      details: r['details'] as string,
    });
    db.prepare(`UPDATE events SET outcome = 'success', reason = NULL, hash = ? WHERE seq = 4`).run(h);
    db.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { seq: 5, kind: 'broken-link' } });
  });

  it('detects a deleted row, a deleted tail and a deleted head', () => {
    store.append(Array.from({ length: 10 }, (_, i) => ev(i + 1)));
    store.close();
    let db = raw();
    db.prepare('DELETE FROM events WHERE seq = 7').run();
    db.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { seq: 7, kind: 'deleted' } });
    store.close();
    db = raw();
    db.prepare('DELETE FROM events WHERE seq >= 7').run();
    db.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { seq: 7, kind: 'truncated' } });
    store.close();
    db = raw();
    db.prepare('DELETE FROM events WHERE seq <= 2').run();
    db.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { seq: 1, kind: 'deleted' } });
  });

  it('detects reordered rows', () => {
    store.append(Array.from({ length: 10 }, (_, i) => ev(i + 1)));
    store.close();
    const db = raw();
    db.transaction(() => {
      db.prepare('UPDATE events SET seq = -1 WHERE seq = 3').run();
      db.prepare('UPDATE events SET seq = 3 WHERE seq = 5').run();
      db.prepare('UPDATE events SET seq = 5 WHERE seq = -1').run();
    })();
    db.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { seq: 3, kind: 'reordered' } });
    expect(store.verifyChain().problem!.message).toMatch(/written as seq 5/);
  });

  it('retention by rows, age and size keeps the remaining chain verifiable', () => {
    store.append(Array.from({ length: 100 }, (_, i) => ev(i + 1)));
    const r = store.prune({ maxRows: 40 });
    expect(r).toEqual({ deleted: 60, anchorSeq: 60 });
    const st = store.stats();
    // 40 kept + the retention event itself
    expect(st.rows).toBe(41);
    expect(st.firstSeq).toBe(61);
    const rep = store.verifyChain();
    expect(rep).toMatchObject({ ok: true, anchorSeq: 60, firstSeq: 61, lastSeq: 101 });
    const retention = store.query({ types: ['retention'] });
    expect(retention[0]).toMatchObject({
      seq: 101,
      reason: 'max-rows',
      details: { anchorSeq: 60, deleted: 60 },
    });

    const t0 = 1_700_000_000_000;
    const byAge = store.prune({ maxAgeMs: 10_000 }, t0 + 80_000);
    expect(byAge.anchorSeq).toBe(69); // ts < t0+70s: events 1..69
    expect(store.verifyChain().ok).toBe(true);

    store.append(Array.from({ length: 3000 }, (_, i) => ev(i + 1, { details: { pad: 'x'.repeat(200) } })));
    const before = store.stats().bytes;
    const bySize = store.prune({ maxBytes: Math.floor(before / 2) });
    expect(bySize.deleted).toBeGreaterThan(1000);
    expect(store.verifyChain().ok).toBe(true);
    // prune everything: the chain is just the retention event
    store.prune({ maxRows: 0 });
    const rep2 = store.verifyChain();
    expect(rep2.ok).toBe(true);
    expect(rep2.checked).toBe(1);
  });

  it('checks checkpoints: matching, differing, removed by retention, past the end, malformed', () => {
    store.append(Array.from({ length: 20 }, (_, i) => ev(i + 1)));
    const rep = store.verifyChain();
    expect(rep).toMatchObject({ ok: true, lastSeq: 20 });
    expect(rep.lastHash).toMatch(/^[0-9a-f]{64}$/);
    const at10 = store.query({ afterSeq: 9, limit: 1 })[0]!.hash;
    expect(
      store.verifyChain([
        { seq: 10, hash: at10 },
        { seq: 20, hash: rep.lastHash! },
      ]).ok,
    ).toBe(true);
    expect(store.verifyChain([{ seq: 10, hash: rep.lastHash! }])).toMatchObject({
      ok: false,
      problem: { seq: 10, kind: 'checkpoint' },
    });
    expect(store.verifyChain([{ seq: 25, hash: at10 }])).toMatchObject({
      ok: false,
      problem: { seq: 25, kind: 'checkpoint', message: expect.stringMatching(/past the last stored row/) },
    });
    store.prune({ maxRows: 5 }); // anchor at seq 15
    const at15 = '' + store.verifyChain().anchorSeq;
    expect(at15).toBe('15');
    expect(store.verifyChain([{ seq: 10, hash: at10 }])).toMatchObject({
      ok: false,
      problem: { kind: 'checkpoint', message: expect.stringMatching(/removed by retention/) },
    });
    expect(store.verifyChain([{ seq: 20, hash: rep.lastHash! }]).ok).toBe(true);
    expect(() => store.verifyChain([{ seq: 0, hash: at10 }])).toThrow(/checkpoint must be/);
    expect(() => store.verifyChain([{ seq: 3, hash: 'abc' }])).toThrow(/checkpoint must be/);
  });

  it('detects a forged anchor', () => {
    store.append(Array.from({ length: 20 }, (_, i) => ev(i + 1)));
    store.prune({ maxRows: 10 });
    store.close();
    const db = raw();
    // hide 5 more rows by moving the anchor past them
    const h = (db.prepare('SELECT hash FROM events WHERE seq = 15').get() as { hash: Buffer }).hash;
    db.prepare('DELETE FROM events WHERE seq <= 15').run();
    db.prepare('UPDATE chain_anchor SET seq = 15, hash = ?').run(h);
    db.close();
    store = AuditStore.open({ path });
    expect(store.verifyChain()).toMatchObject({ ok: false, problem: { kind: 'anchor', seq: 16 } });
  });

  it('is read-only when opened so and close() is idempotent', () => {
    store.append([ev(1)]);
    const ro = AuditStore.open({ path, readonly: true });
    expect(ro.query().length).toBe(1);
    expect(() => ro.append([ev(2)])).toThrow(/read-only/);
    expect(ro.verifyChain().ok).toBe(true);
    ro.close();
    ro.close();
    expect(() => ro.query()).toThrow(/closed/);
  });

  it('notifies append listeners', () => {
    const seen: number[] = [];
    const off = store.onAppend((seq) => seen.push(seq));
    store.append([ev(1), ev(2)]);
    expect(store.appendQuiet([ev(3), ev(4)])).toBe(4);
    store.notifyAppended(9);
    off();
    store.append([ev(5)]);
    expect(seen).toEqual([2, 4, 9]);
    expect(store.query().map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(store.verifyChain()).toMatchObject({ ok: true, checked: 5 });
  });
});
