import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { registerDevCaCommands } from '../../../src/cli/commands/dev-ca.js';
import type { CliIo } from '../../../src/cli/io.js';
import { run } from '../../../src/cli/program.js';
import {
  FilesSource,
  FilesSourceError,
  type FilesSourceOptions,
  type IdentityEvent,
} from '../../../src/identity/index.js';
import { formatJwksBundle, MAX_BUNDLE_BYTES, verifyX509Svid } from '../../../src/spiffe/index.js';
import { makeIntermediateCa, makeLeaf, makeRootCa, pemOf, type TestCert } from '../../helpers/certs.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const TD = 'example.org';
const WEB = 'spiffe://example.org/ns/demo/sa/web';
const DB = 'spiffe://example.org/ns/demo/sa/db';

interface LogLine {
  event?: string;
  reason?: string;
  local_id?: string;
  rotated?: boolean;
  msg?: string;
}

const POLL_MS = 200;
const PAIR_MS = 1_000;

let root: TestCert;
let otherRoot: TestCert;
const dirs: string[] = [];
const open: FilesSource[] = [];

beforeAll(async () => {
  root = await makeRootCa(TD);
  otherRoot = await makeRootCa(TD);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'meshauth-files-source-'));
  dirs.push(d);
  return d;
}

/** Replace a file the way careful writers do: write a temporary file, then rename it over. */
function replace(path: string, data: string | Buffer): void {
  writeFileSync(`${path}.tmp`, data);
  renameSync(`${path}.tmp`, path);
}

function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) },
  );
  return { logger, lines };
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs = 5_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Setup {
  dir: string;
  bundle: string;
  web: { cert: string; key: string };
  db: { cert: string; key: string };
  source: FilesSource;
  events: IdentityEvent[];
  lines: LogLine[];
}

async function setup(
  opts: {
    wanted?: string[];
    bundle?: string | Buffer;
    webLeaf?: TestCert | null;
    dbLeaf?: TestCert | null;
    source?: Partial<FilesSourceOptions>;
  } = {},
): Promise<Setup> {
  const dir = tmp();
  const bundle = join(dir, 'bundle.pem');
  if (opts.bundle !== undefined) writeFileSync(bundle, opts.bundle);
  else writeFileSync(bundle, root.pem);
  const web = { cert: join(dir, 'web.crt'), key: join(dir, 'web.key') };
  const db = { cert: join(dir, 'db', 'db.crt'), key: join(dir, 'db', 'db.key') };
  mkdirSync(join(dir, 'db'));
  const webLeaf = opts.webLeaf === undefined ? await makeLeaf(root, WEB) : opts.webLeaf;
  if (webLeaf) {
    writeFileSync(web.key, webLeaf.keyPem);
    writeFileSync(web.cert, webLeaf.pem);
  }
  const dbLeaf = opts.dbLeaf === undefined ? await makeLeaf(root, DB) : opts.dbLeaf;
  if (dbLeaf) {
    writeFileSync(db.key, dbLeaf.keyPem);
    writeFileSync(db.cert, dbLeaf.pem);
  }
  const { logger, lines } = capturingLogger();
  const source = new FilesSource({
    bundle,
    svids: [
      { spiffeId: WEB, ...web },
      { spiffeId: DB, ...db },
    ],
    logger,
    debounceMs: 20,
    pollIntervalMs: POLL_MS,
    pairSettleMs: PAIR_MS,
    ...opts.source,
  });
  open.push(source);
  const events: IdentityEvent[] = [];
  source.subscribe((e) => events.push(e));
  source.setWanted(opts.wanted ?? [WEB, DB]);
  return { dir, bundle, web, db, source, events, lines };
}

const updates = (events: IdentityEvent[], id: string) =>
  events.filter(
    (e): e is Extract<IdentityEvent, { type: 'svid-updated' }> =>
      e.type === 'svid-updated' && e.spiffeId === id,
  );
const removals = (events: IdentityEvent[], id: string) =>
  events.filter(
    (e): e is Extract<IdentityEvent, { type: 'svid-removed' }> =>
      e.type === 'svid-removed' && e.spiffeId === id,
  );

describe('FilesSource: loading', () => {
  it('loads the bundle and every wanted SVID, verified, with matching keys', async () => {
    const s = await setup();
    await s.source.ready();
    expect(s.source.kind).toBe('files');
    expect([...s.source.bundles().entries()]).toEqual([[TD, [root.der]]]);
    for (const id of [WEB, DB]) {
      const svid = s.source.svid(id)!;
      expect(svid.spiffeId).toBe(id);
      expect(svid.leaf.checkPrivateKey(svid.key)).toBe(true);
      expect(verifyX509Svid(svid.chainDer, s.source.bundles()).spiffeId.toString()).toBe(id);
      expect(svid.chainPem).toContain('-----BEGIN CERTIFICATE-----');
      expect(svid.keyPem).toContain('-----BEGIN PRIVATE KEY-----');
    }
    expect(s.events.map((e) => e.type).sort()).toEqual([
      'bundles-updated',
      'source-state',
      'svid-updated',
      'svid-updated',
    ]);
    expect(s.events.find((e) => e.type === 'source-state')).toMatchObject({ state: 'connected' });
    expect(
      s.lines
        .filter((l) => l.event === 'svid_updated' && l.rotated === false)
        .map((l) => l.local_id)
        .sort(),
    ).toEqual([DB, WEB]);
  });

  it('holds only wanted identities and drops one that is no longer wanted', async () => {
    const s = await setup({ wanted: [WEB] });
    await s.source.ready();
    expect(s.source.svid(WEB)).toBeDefined();
    expect(s.source.svid(DB)).toBeUndefined();
    s.source.setWanted([DB]);
    await s.source.ready();
    expect(s.source.svid(WEB)).toBeUndefined();
    expect(s.source.svid(DB)).toBeDefined();
    expect(removals(s.events, WEB)).toEqual([
      { type: 'svid-removed', spiffeId: WEB, reason: 'workload no longer on this node' },
    ]);
    // wanted again: loaded again from the same files
    s.source.setWanted([WEB, DB]);
    await s.source.ready();
    expect(updates(s.events, WEB)).toHaveLength(2);
  });

  it('keeps intermediates in the presented chain and leaves out a bundle root appended to the file', async () => {
    const inter = await makeIntermediateCa(root, TD);
    const leaf = await makeLeaf(inter, WEB);
    const s = await setup({ wanted: [WEB], webLeaf: null });
    writeFileSync(s.web.key, leaf.keyPem);
    writeFileSync(s.web.cert, pemOf(leaf, inter, root));
    s.source.setWanted([WEB]);
    await waitFor('web SVID', () => s.source.svid(WEB));
    expect(s.source.svid(WEB)!.chainDer).toEqual([leaf.der, inter.der]);
  });

  it('reads DER chains, DER keys, and JWKS bundles', async () => {
    const leaf = await makeLeaf(root, WEB);
    const s = await setup({
      wanted: [WEB],
      webLeaf: null,
      bundle: formatJwksBundle({ trustDomain: TD, x509Authorities: [root.der] }),
    });
    writeFileSync(s.web.key, leaf.key.export({ format: 'der', type: 'pkcs8' }));
    writeFileSync(s.web.cert, leaf.der);
    await waitFor('web SVID', () => s.source.svid(WEB));
    expect(s.source.svid(WEB)!.leaf.raw.equals(leaf.der)).toBe(true);
    expect(s.source.bundles().get(TD)).toEqual([root.der]);
  });

  it('ready() rejects naming each problem, then the source recovers when the files appear', async () => {
    const s = await setup({ webLeaf: null, bundle: 'not a bundle' });
    s.source.setWanted([WEB, DB, 'spiffe://example.org/ns/demo/sa/unknown']);
    const err = await s.source.ready().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FilesSourceError);
    const msg = (err as Error).message;
    expect(msg).toMatch(
      /^files identity source: not ready: bundle .*bundle\.pem: parse bundle for "example\.org": /,
    );
    expect(msg).toContain(`${WEB}: ${s.web.cert}: no such file`);
    expect(msg).toContain(`${DB}: cannot verify ${s.db.cert}: no valid trust bundle loaded`);
    expect(msg).toContain('parse bundle for "example.org": neither PEM nor DER');
    expect(msg).toContain(
      'spiffe://example.org/ns/demo/sa/unknown: no certificate and key files are configured',
    );
    expect(s.events).toContainEqual({
      type: 'source-state',
      state: 'no-identity',
      detail: 'no certificate and key files are configured for spiffe://example.org/ns/demo/sa/unknown',
    });
    expect(s.source.bundles().size).toBe(0);
    expect(s.lines.some((l) => l.event === 'bundle_rejected' && l.reason === 'bundle-invalid')).toBe(true);

    // fix the bundle: db (already on disk) loads; web files are still missing
    replace(s.bundle, root.pem);
    await waitFor('db SVID', () => s.source.svid(DB));
    expect(s.source.svid(WEB)).toBeUndefined();
    const leaf = await makeLeaf(root, WEB);
    replace(s.web.key, leaf.keyPem);
    replace(s.web.cert, leaf.pem);
    await waitFor('web SVID', () => s.source.svid(WEB));
    s.source.setWanted([WEB, DB]);
    await expect(s.source.ready()).resolves.toBeUndefined();
  });

  it('refuses a configuration with an invalid or duplicate SPIFFE ID', () => {
    expect(
      () =>
        new FilesSource({
          bundle: '/nonexistent',
          svids: [{ spiffeId: 'spiffe://x/', cert: 'a', key: 'b' }],
        }),
    ).toThrow(/files identity source: parse SPIFFE ID "spiffe:\/\/x\/": path cannot have a trailing slash/);
    expect(
      () =>
        new FilesSource({
          bundle: '/nonexistent',
          svids: [
            { spiffeId: WEB, cert: 'a', key: 'b' },
            { spiffeId: WEB, cert: 'c', key: 'd' },
          ],
        }),
    ).toThrow(`${WEB} is configured twice`);
  });
});

describe('FilesSource: changes on disk', () => {
  it('rotates when the files are replaced, with previousNotAfter', async () => {
    const s = await setup();
    await s.source.ready();
    const first = s.source.svid(WEB)!;
    const next = await makeLeaf(root, WEB, { notAfter: new Date(Date.now() + 2 * 3_600_000) });
    replace(s.web.key, next.keyPem);
    replace(s.web.cert, next.pem);
    await waitFor('rotation', () => updates(s.events, WEB).length === 2);
    const ev = updates(s.events, WEB)[1]!;
    expect(ev.previousNotAfter?.getTime()).toBe(first.notAfter.getTime());
    expect(ev.svid.leaf.serialNumber).toBe(next.cert.serialNumber.toUpperCase());
    expect(s.source.svid(WEB)!.leaf.serialNumber).toBe(next.cert.serialNumber.toUpperCase());
    expect(removals(s.events, WEB)).toEqual([]);
    expect(s.lines.some((l) => l.event === 'svid_updated' && l.rotated === true && l.local_id === WEB)).toBe(
      true,
    );
  });

  it('notices files rewritten in place', async () => {
    const s = await setup({ wanted: [WEB] });
    await s.source.ready();
    const next = await makeLeaf(root, WEB);
    writeFileSync(s.web.key, next.keyPem);
    writeFileSync(s.web.cert, next.pem);
    await waitFor(
      'rotation',
      () => s.source.svid(WEB)?.leaf.serialNumber === next.cert.serialNumber.toUpperCase(),
    );
  });

  it('notices changes by polling alone when watching is off', async () => {
    const s = await setup({ wanted: [WEB], source: { watch: false, pollIntervalMs: 100 } });
    await s.source.ready();
    const next = await makeLeaf(root, WEB);
    replace(s.web.key, next.keyPem);
    replace(s.web.cert, next.pem);
    await waitFor(
      'rotation by polling',
      () => s.source.svid(WEB)?.leaf.serialNumber === next.cert.serialNumber.toUpperCase(),
    );
  });

  const invalid: Array<[what: string, reason: string, write: (s: Setup) => Promise<void>]> = [
    [
      'untrusted CA',
      'svid-untrusted',
      async (s) => {
        const bad = await makeLeaf(otherRoot, WEB);
        replace(s.web.key, bad.keyPem);
        replace(s.web.cert, bad.pem);
      },
    ],
    [
      'key of another certificate',
      'svid-key-mismatch',
      async (s) => {
        const other = await makeLeaf(root, WEB);
        replace(s.web.key, other.keyPem);
      },
    ],
    [
      'SVID of another identity',
      'spiffe-id-mismatch',
      async (s) => {
        const db = await makeLeaf(root, DB);
        replace(s.web.key, db.keyPem);
        replace(s.web.cert, db.pem);
      },
    ],
    [
      'expired SVID',
      'svid-expired',
      async (s) => {
        const old = await makeLeaf(root, WEB, {
          notBefore: new Date(Date.now() - 7_200_000),
          notAfter: new Date(Date.now() - 60_000),
        });
        replace(s.web.key, old.keyPem);
        replace(s.web.cert, old.pem);
      },
    ],
    [
      'CA certificate as leaf',
      'svid-leaf-is-ca',
      async (s) => {
        const ca = await makeIntermediateCa(root, TD, { uris: [WEB] });
        replace(s.web.key, ca.keyPem);
        replace(s.web.cert, ca.pem);
      },
    ],
    ['garbage certificate', 'svid-malformed', async (s) => replace(s.web.cert, 'garbage')],
    [
      'garbage key',
      'bad-key',
      async (s) => replace(s.web.key, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'),
    ],
  ];

  it.each(invalid)('rejects %s (%s), logs why, and keeps the previous SVID', async (_what, reason, write) => {
    const clock = new FakeClock();
    const s = await setup({ wanted: [WEB], source: { clock } });
    await s.source.ready();
    const before = s.source.svid(WEB)!;
    await write(s);
    // The periodic check notices the new files; settle() runs the reload it schedules. A key
    // replaced alone is first taken as a rotation in progress, and rejected once PAIR_MS passed.
    clock.advance(POLL_MS);
    await s.source.settle();
    clock.advance(PAIR_MS);
    await s.source.settle();
    const line = s.lines.find((l) => l.event === 'svid_rejected');
    expect(line).toMatchObject({
      reason,
      local_id: WEB,
      msg: 'SVID files rejected; keeping the previous SVID',
    });
    expect(s.source.svid(WEB)).toBe(before);
    expect(updates(s.events, WEB)).toHaveLength(1);
    expect(removals(s.events, WEB)).toEqual([]);
    // one log line per bad version of the files, not one per check: each round touches the
    // certificate file, so every periodic check sees a change and reads the same bad files again
    for (let i = 1; i <= 3; i++) {
      utimesSync(s.web.cert, new Date(), new Date(Date.now() + i * 10_000));
      clock.advance(POLL_MS);
      await s.source.settle();
    }
    expect(s.lines.filter((l) => l.event === 'svid_rejected')).toHaveLength(1);
  });

  it.each([
    ['key first', 'key', 'cert'],
    ['certificate first', 'cert', 'key'],
  ] as const)(
    'takes a pair read between the two renames of a rotation (%s) as in progress, not as a rejection',
    async (_what, first, second) => {
      const clock = new FakeClock();
      const s = await setup({ wanted: [WEB], source: { clock } });
      await s.source.ready();
      const before = s.source.svid(WEB)!;
      const next = await makeLeaf(root, WEB);
      const write = { key: () => replace(s.web.key, next.keyPem), cert: () => replace(s.web.cert, next.pem) };
      write[first]();
      clock.advance(POLL_MS);
      await s.source.settle();
      // half old, half new: the previous SVID stays, nothing is reported
      expect(s.source.svid(WEB)).toBe(before);
      expect(s.lines.filter((l) => l.event === 'svid_pair_pending')).toHaveLength(1);
      clock.advance(PAIR_MS - POLL_MS - 1);
      await s.source.settle();
      write[second]();
      clock.advance(POLL_MS);
      await s.source.settle();
      expect(s.source.svid(WEB)!.leaf.serialNumber).toBe(next.cert.serialNumber.toUpperCase());
      expect(updates(s.events, WEB)).toHaveLength(2);
      // the wait ended with the rotation: no timer fires a late rejection
      clock.advance(10 * PAIR_MS);
      await s.source.settle();
      expect(s.lines.filter((l) => l.event === 'svid_rejected')).toEqual([]);
      expect(removals(s.events, WEB)).toEqual([]);
    },
  );

  it('waits for the rest of a rotation at start-up: ready() stays pending, then names the mismatch', async () => {
    const clock = new FakeClock();
    const other = await makeLeaf(root, WEB);
    const s = await setup({ wanted: [WEB], source: { clock } });
    await s.source.ready();
    await s.source.close();
    replace(s.web.key, other.keyPem);
    const { logger, lines } = capturingLogger();
    const source = new FilesSource({
      bundle: s.bundle,
      svids: [{ spiffeId: WEB, ...s.web }],
      logger,
      clock,
      pairSettleMs: PAIR_MS,
    });
    open.push(source);
    source.setWanted([WEB]);
    let outcome: unknown;
    const ready = source.ready().then(
      () => (outcome = 'ready'),
      (e: unknown) => (outcome = e),
    );
    await source.settle();
    expect(outcome).toBeUndefined();
    expect(lines.filter((l) => l.event === 'svid_rejected')).toEqual([]);
    clock.advance(PAIR_MS);
    await source.settle();
    await ready;
    expect(outcome).toBeInstanceOf(FilesSourceError);
    expect((outcome as Error).message).toContain('the key does not belong to the certificate');
    expect(lines.filter((l) => l.event === 'svid_rejected').map((l) => l.reason)).toEqual([
      'svid-key-mismatch',
    ]);
  });

  it('removes an identity whose files are deleted, and loads it again when they come back', async () => {
    const s = await setup();
    await s.source.ready();
    rmSync(s.db.cert);
    await waitFor('removal', () => removals(s.events, DB).length === 1);
    expect(removals(s.events, DB)[0]!.reason).toBe(`file removed: ${s.db.cert}`);
    expect(s.source.svid(DB)).toBeUndefined();
    expect(s.source.svid(WEB)).toBeDefined();
    const again = await makeLeaf(root, DB);
    replace(s.db.key, again.keyPem);
    replace(s.db.cert, again.pem);
    await waitFor('db back', () => s.source.svid(DB));
    expect(updates(s.events, DB)).toHaveLength(2);
  });

  it('drops an SVID when it expires while held', async () => {
    const clock = new FakeClock();
    const short = await makeLeaf(root, WEB, {
      notBefore: new Date(clock.now() - 60_000),
      notAfter: new Date(clock.now() + 2_500),
    });
    const s = await setup({ wanted: [WEB], webLeaf: short, source: { clock } });
    await s.source.ready();
    expect(s.source.svid(WEB)).toBeDefined();
    clock.advance(1_000);
    expect(s.source.svid(WEB)).toBeDefined();
    expect(removals(s.events, WEB)).toEqual([]);
    clock.advance(2_500);
    expect(removals(s.events, WEB)).toHaveLength(1);
    expect(removals(s.events, WEB)[0]!.reason).toBe('expired');
    expect(s.source.svid(WEB)).toBeUndefined();
    await expect(s.source.ready()).rejects.toThrow(/SVID expired at/);
  });
});

describe('FilesSource: with the dev CA command writing the files', () => {
  it('picks up each `meshauth dev-ca issue` as one clean rotation', async () => {
    const dir = tmp();
    const io: CliIo = { out: () => undefined, err: (t) => void process.stderr.write(t), env: {} };
    const cli = (...args: string[]) => run(args, io, [registerDevCaCommands]);
    expect(await cli('dev-ca', 'init', '--dir', join(dir, 'ca'), '--trust-domain', TD)).toBe(0);
    const prefix = join(dir, 'svids', 'web');
    expect(await cli('dev-ca', 'issue', '--dir', join(dir, 'ca'), '--spiffe-id', WEB, '--out', prefix)).toBe(
      0,
    );
    const { logger, lines } = capturingLogger();
    // Time is the test's: the source reads the files whenever the loop below moves the clock, also
    // between the command's two writes, and never gives up waiting for the second one on its own.
    const clock = new FakeClock();
    const source = new FilesSource({
      bundle: join(dir, 'ca', 'ca.crt'),
      svids: [{ spiffeId: WEB, cert: `${prefix}.crt`, key: `${prefix}.key` }],
      logger,
      clock,
      debounceMs: 20,
      pollIntervalMs: POLL_MS,
      pairSettleMs: 60_000,
    });
    open.push(source);
    const events: IdentityEvent[] = [];
    source.subscribe((e) => events.push(e));
    source.setWanted([WEB]);
    await source.ready();
    for (let i = 0; i < 3; i++) {
      const serial = source.svid(WEB)!.leaf.serialNumber;
      let done = false;
      const issued = cli(
        'dev-ca',
        'issue',
        '--dir',
        join(dir, 'ca'),
        '--spiffe-id',
        WEB,
        '--ttl',
        '30m',
        '--out',
        prefix,
      ).finally(() => (done = true));
      // Check the files over and over while the command writes them (well inside pairSettleMs).
      for (let step = 0; !done && step < 100; step++) {
        clock.advance(POLL_MS);
        await source.settle();
        await new Promise((r) => setImmediate(r));
      }
      expect(await issued).toBe(0);
      clock.advance(POLL_MS);
      await source.settle();
      expect(source.svid(WEB)!.leaf.serialNumber).not.toBe(serial);
    }
    expect(updates(events, WEB)).toHaveLength(4);
    expect(removals(events, WEB)).toEqual([]);
    expect(lines.filter((l) => l.event === 'svid_rejected')).toEqual([]);
  });

  it('finds files in a directory created after start (periodic check)', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'bundle.pem'), root.pem);
    const later = join(dir, 'later');
    const source = new FilesSource({
      bundle: join(dir, 'bundle.pem'),
      svids: [{ spiffeId: WEB, cert: join(later, 'web.crt'), key: join(later, 'web.key') }],
      debounceMs: 20,
      pollIntervalMs: 100,
    });
    open.push(source);
    source.setWanted([WEB]);
    await expect(source.ready()).rejects.toThrow(/web\.crt: no such file/);
    const leaf = await makeLeaf(root, WEB);
    mkdirSync(later);
    writeFileSync(join(later, 'web.key'), leaf.keyPem);
    writeFileSync(join(later, 'web.crt'), leaf.pem);
    await waitFor('late SVID', () => source.svid(WEB));
  });
});

describe('FilesSource: bundle changes', () => {
  it('follows a CA rotation written SVID-first: untrusted until the bundle carries the new CA', async () => {
    const s = await setup({ wanted: [WEB] });
    await s.source.ready();
    const before = s.source.svid(WEB)!;
    const next = await makeLeaf(otherRoot, WEB);
    replace(s.web.key, next.keyPem);
    replace(s.web.cert, next.pem);
    await waitFor('rejection', () =>
      s.lines.find((l) => l.event === 'svid_rejected' && l.reason === 'svid-untrusted'),
    );
    expect(s.source.svid(WEB)).toBe(before);

    replace(s.bundle, pemOf(root, otherRoot));
    await waitFor('bundle update', () => s.events.filter((e) => e.type === 'bundles-updated').length === 2);
    expect(s.source.bundles().get(TD)).toEqual([root.der, otherRoot.der]);
    await waitFor(
      'new SVID',
      () => s.source.svid(WEB)?.leaf.serialNumber === next.cert.serialNumber.toUpperCase(),
    );
  });

  it('keeps the previous bundle when the new file is invalid, empty, or gone', async () => {
    const s = await setup({ wanted: [WEB] });
    await s.source.ready();
    const leaf = await makeLeaf(root, WEB);
    for (const bad of [leaf.pem, '', '{"keys": []}', Buffer.from([0x30, 0x03, 0x02])]) {
      const before = s.lines.filter((l) => l.event === 'bundle_rejected').length;
      replace(s.bundle, bad);
      await waitFor(
        'bundle rejection',
        () => s.lines.filter((l) => l.event === 'bundle_rejected').length > before,
      );
      expect(s.source.bundles().get(TD)).toEqual([root.der]);
    }
    rmSync(s.bundle);
    await waitFor('missing bundle log', () =>
      s.lines.find((l) => l.event === 'bundle_rejected' && l.reason === 'bundle-missing'),
    );
    expect(s.source.bundles().get(TD)).toEqual([root.der]);
    expect(s.events.filter((e) => e.type === 'bundles-updated')).toHaveLength(1);
    expect(s.source.svid(WEB)).toBeDefined();
  });

  it("regression: a FIFO, a device, a directory or an oversized file in a file's place is refused; close() still returns", async () => {
    const s = await setup({ wanted: [WEB] });
    await s.source.ready();
    const held = s.source.svid(WEB)!;
    const goodCert = readFileSync(s.web.cert);
    const goodBundle = readFileSync(s.bundle);
    const rejected = (reason: string, file: string, why: string) =>
      waitFor(`${file}: ${why}`, () =>
        s.lines.find(
          (l) =>
            l.reason === reason &&
            (l as { err?: string }).err === `${file}: ${why}` &&
            (l.event === 'svid_rejected' || l.event === 'bundle_rejected'),
        ),
      );
    const put = (path: string, make: (p: string) => void) => {
      rmSync(path, { recursive: true, force: true });
      make(path);
    };
    // before: readFile of a FIFO blocked for ever: no reload ran again and close() never returned
    put(s.web.cert, (p) => execFileSync('mkfifo', [p]));
    await rejected('unreadable', s.web.cert, 'not a regular file (a FIFO)');
    // before: /dev/zero was read without end
    put(s.web.cert, (p) => symlinkSync('/dev/zero', p));
    await rejected('unreadable', s.web.cert, 'not a regular file (a device)');
    put(s.web.cert, (p) => mkdirSync(p));
    await rejected('unreadable', s.web.cert, 'is a directory, not a file');
    put(s.web.key, (p) => execFileSync('mkfifo', [p]));
    put(s.web.cert, (p) => writeFileSync(p, goodCert));
    await rejected('unreadable', s.web.key, 'not a regular file (a FIFO)');
    // the SVID held before is kept throughout
    expect(s.source.svid(WEB)).toBe(held);

    put(s.bundle, (p) => execFileSync('mkfifo', [p]));
    await waitFor('bundle FIFO refused', () =>
      s.lines.find(
        (l) =>
          l.event === 'bundle_rejected' &&
          l.reason === 'bundle-unreadable' &&
          JSON.stringify(l).includes('not a regular file (a FIFO)'),
      ),
    );
    put(s.bundle, (p) => writeFileSync(p, Buffer.alloc(MAX_BUNDLE_BYTES + 1, 0x41)));
    await waitFor('oversized bundle refused', () =>
      s.lines.find((l) => l.event === 'bundle_rejected' && JSON.stringify(l).includes('larger than')),
    );
    expect(s.source.bundles().get(TD)).toEqual([root.der]);

    // good files again: usable at once
    put(s.bundle, (p) => writeFileSync(p, goodBundle));
    put(s.web.key, (p) => writeFileSync(p, held.keyPem));
    await s.source.ready();
    expect(s.source.svid(WEB)?.leaf.serialNumber).toBe(held.leaf.serialNumber);
    // and with a FIFO in place again, close() returns
    put(s.web.cert, (p) => execFileSync('mkfifo', [p]));
    await rejected('unreadable', s.web.cert, 'not a regular file (a FIFO)');
    await s.source.close();
  });

  it('groups authorities by the trust domain their spiffe:// URI SAN names', async () => {
    const fed = await makeRootCa('partner.org');
    const s = await setup({ wanted: [WEB], bundle: pemOf(root, fed) });
    await s.source.ready();
    expect(s.source.bundles().get(TD)).toEqual([root.der]);
    expect(s.source.bundles().get('partner.org')).toEqual([fed.der]);
  });
});

describe('FilesSource: lifecycle', () => {
  it('close() is idempotent and stops watching and emitting', async () => {
    const clock = new FakeClock();
    const s = await setup({ wanted: [WEB], source: { clock } });
    await s.source.ready();
    await s.source.close();
    await s.source.close();
    // No timer is left to fire: not the periodic check, a debounce nor the expiry.
    expect(clock.pending).toBe(0);
    const count = s.events.length;
    const next = await makeLeaf(root, WEB);
    replace(s.web.key, next.keyPem);
    replace(s.web.cert, next.pem);
    clock.advance(10 * POLL_MS);
    await s.source.settle();
    expect(s.events).toHaveLength(count);
    s.source.setWanted([]);
    expect(s.events).toHaveLength(count);
  });
});
