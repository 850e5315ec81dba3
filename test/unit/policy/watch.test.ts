import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPolicyFile, watchPolicyFile, type Policy } from '../../../src/policy/index.js';
import { MAX_INPUT_FILE_BYTES } from '../../../src/read-file.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const dir = mkdtempSync(join(tmpdir(), 'meshauth-policy-watch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const API = 'spiffe://demo.local/ns/demo/sa/api';
const DB = 'spiffe://demo.local/ns/demo/sa/db';

const ONE_RULE = `rules:
  - name: web-api
    from: ${WEB}
    to: ${API}
`;
const TWO_RULES = `${ONE_RULE}  - name: api-db
    from: ${API}
    to: ${DB}
    mode: permissive
`;

interface Logged {
  event?: string;
  file?: string;
  rules?: number;
  reason?: string;
}

function setup(name: string, text: string) {
  const file = join(dir, name);
  writeFileSync(file, text);
  const policy: { current: Policy } = { current: loadPolicyFile(file) };
  const first = policy.current;
  const clock = new FakeClock();
  const logged: Logged[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l) as Logged) });
  let changes = 0;
  const watcher = watchPolicyFile(policy, file, { log, onChange: () => changes++, debounceMs: 20, clock });
  return { file, policy, first, clock, logged, watcher, changes: () => changes };
}

/** Writes `text` to `file` the way editors and config managers do: a new file renamed over it. */
function writeAtomically(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

describe('policy file reload', () => {
  it('takes a good new file on change: swaps policy.current, notifies, logs the rule count', async () => {
    const t = setup('good.yaml', ONE_RULE);
    try {
      expect(t.policy.current.pairMode(API, DB)).toBeUndefined();
      writeAtomically(t.file, TWO_RULES);
      // Settle point: the watcher noticed the rename (its debounce is pending); then the quiet time passes.
      await expect.poll(() => t.clock.pending, { timeout: 5_000 }).toBe(1);
      t.clock.advance(19);
      expect(t.changes()).toBe(0);
      t.clock.advance(1);
      expect(t.changes()).toBe(1);
      expect(t.policy.current).not.toBe(t.first);
      expect(t.policy.current.rules.map((r) => r.name)).toEqual(['web-api', 'api-db']);
      expect(t.policy.current.pairMode(DB, API)).toBe('permissive');
      expect(t.logged).toEqual([
        expect.objectContaining({ event: 'policy_reloaded', file: t.file, rules: 2 }),
      ]);

      // The same rules again (a touch, another file's swap in the directory): no change, no log.
      const current = t.policy.current;
      expect(t.watcher.reload()).toEqual({ ok: true });
      expect(t.policy.current).toBe(current);
      expect(t.changes()).toBe(1);
      expect(t.logged).toHaveLength(1);
    } finally {
      t.watcher.close();
      t.watcher.close();
    }
  });

  it('keeps the last good policy on a bad file, names file and reason, and takes the fixed file', async () => {
    const t = setup('bad.yaml', ONE_RULE);
    try {
      const bad: Array<[string, () => void, RegExp]> = [
        [
          'YAML syntax',
          () => writeFileSync(t.file, 'rules:\n  - name: x\n   from: y\n'),
          /line 3, column \d+: YAML syntax error/,
        ],
        [
          'schema',
          () => writeFileSync(t.file, `${ONE_RULE}    extra: 1\n`),
          /rules\[0\]\.extra: unknown key/,
        ],
        [
          'bad pattern',
          () => writeFileSync(t.file, ONE_RULE.replace(API, 'spiffe://*/x')),
          /rules\[0\]\.to: /,
        ],
        ['empty (truncated) file', () => writeFileSync(t.file, ''), /policy .*: /],
        ['deleted', () => rmSync(t.file), /cannot read: file not found/],
        ['unreadable (a directory)', () => mkdirSync(t.file), /cannot read: /],
      ];
      for (const [what, write, reason] of bad) {
        write();
        const r = t.watcher.reload();
        expect(r.ok, what).toBe(false);
        const last = t.logged.at(-1);
        expect(last?.event, what).toBe('policy_reload_failed');
        expect(last?.file, what).toBe(t.file);
        expect(last?.reason, what).toContain(`policy ${t.file}: `);
        expect(last?.reason, what).toMatch(reason);
        expect(!r.ok && r.error.message, what).toBe(last?.reason);
        // Fail closed: the last good policy stays (never "no policy" = no enforcement).
        expect(t.policy.current, what).toBe(t.first);
        expect(t.policy.current.pairMode(WEB, API), what).toBe('enforce');
      }
      expect(t.changes()).toBe(0);
      expect(t.logged.map((l) => l.event)).toEqual(bad.map(() => 'policy_reload_failed'));

      // Watching went on: the fixed file, put back by rename, is picked up by the watcher.
      rmSync(t.file, { recursive: true });
      writeAtomically(t.file, TWO_RULES);
      await expect.poll(() => t.clock.pending, { timeout: 5_000 }).toBe(1);
      t.clock.advance(20);
      expect(t.changes()).toBe(1);
      expect(t.policy.current.rules).toHaveLength(2);
      expect(t.logged.at(-1)).toEqual(expect.objectContaining({ event: 'policy_reloaded', rules: 2 }));
    } finally {
      t.watcher.close();
    }
  });

  it('refuses a policy path that is no regular file or too large, at once, and keeps the last good policy', () => {
    const t = setup('special.yaml', ONE_RULE);
    // A FIFO with no writer: a plain synchronous read would block the event loop (every timer, every
    // handshake) until some process opened it for writing. This writer opens and closes it after a
    // while, so that a read that does block ends (and fails this test on its message) instead of
    // hanging the test run; with the file refused before any read it is killed unused.
    const fifo = join(dir, 'special.fifo');
    const mk = spawn('mkfifo', [fifo], { stdio: 'ignore' });
    const made = new Promise<number | null>((resolve) => mk.once('exit', resolve));
    return made.then((code) => {
      expect(code).toBe(0);
      const writer = spawn('timeout', ['20', 'sh', '-c', `sleep 3; [ -p '${t.file}' ] && : > '${t.file}'`], {
        stdio: 'ignore',
      });
      try {
        const bad: Array<[string, () => void, RegExp]> = [
          [
            'a FIFO renamed over the file',
            () => renameSync(fifo, t.file),
            /cannot read: not a regular file \(a FIFO\)/,
          ],
          [
            'a symlink to a device (/dev/null reads as an empty file, /dev/zero never ends)',
            () => {
              rmSync(t.file);
              symlinkSync('/dev/null', t.file);
            },
            /cannot read: not a regular file \(a device\)/,
          ],
          [
            // A valid policy (no rules: nothing enforced) padded past the bound: refused unread.
            'larger than the bound',
            () => {
              rmSync(t.file);
              writeFileSync(t.file, `rules: []\n#${'x'.repeat(MAX_INPUT_FILE_BYTES)}\n`);
            },
            new RegExp(`cannot read: larger than ${MAX_INPUT_FILE_BYTES} bytes`),
          ],
        ];
        for (const [what, put, reason] of bad) {
          put();
          const r = t.watcher.reload();
          expect(r.ok, what).toBe(false);
          expect(t.logged.at(-1)?.event, what).toBe('policy_reload_failed');
          expect(t.logged.at(-1)?.reason, what).toMatch(reason);
          expect(t.policy.current, what).toBe(t.first);
          expect(t.policy.current.pairMode(WEB, API), what).toBe('enforce');
        }
        expect(t.changes()).toBe(0);
        // A good file put back is taken.
        rmSync(t.file);
        writeFileSync(t.file, TWO_RULES);
        expect(t.watcher.reload()).toEqual({ ok: true });
        expect(t.policy.current.rules).toHaveLength(2);
      } finally {
        writer.kill();
        t.watcher.close();
      }
    });
  });

  it('a failed read between two good writes (non-atomic writer) does not drop the policy', async () => {
    const t = setup('partial.yaml', ONE_RULE);
    try {
      // A writer that truncates, then writes: the debounced read may see the empty file.
      writeFileSync(t.file, '');
      await expect.poll(() => t.clock.pending, { timeout: 5_000 }).toBe(1);
      t.clock.advance(20);
      expect(t.logged.map((l) => l.event)).toEqual(['policy_reload_failed']);
      expect(t.policy.current).toBe(t.first);
      writeFileSync(t.file, TWO_RULES);
      await expect.poll(() => t.clock.pending, { timeout: 5_000 }).toBe(1);
      t.clock.advance(20);
      expect(t.logged.map((l) => l.event)).toEqual(['policy_reload_failed', 'policy_reloaded']);
      expect(t.policy.current.rules).toHaveLength(2);
    } finally {
      t.watcher.close();
    }
  });

  it('close() stops reloading: a pending change is dropped', async () => {
    const t = setup('closed.yaml', ONE_RULE);
    writeAtomically(t.file, TWO_RULES);
    await expect.poll(() => t.clock.pending, { timeout: 5_000 }).toBe(1);
    t.watcher.close();
    expect(t.clock.pending).toBe(0);
    t.clock.advance(1_000);
    expect(t.policy.current).toBe(t.first);
    expect(t.changes()).toBe(0);
    expect(t.logged).toEqual([]);
  });

  it('logs how many rules were added, removed and changed (a mode change counts)', () => {
    const t = setup('diff.yaml', TWO_RULES);
    try {
      // web-api: mode changed; api-db: removed; web-db: added.
      writeFileSync(
        t.file,
        `rules:
  - name: web-api
    from: ${WEB}
    to: ${API}
    mode: permissive
  - name: web-db
    from: ${WEB}
    to: ${DB}
`,
      );
      expect(t.watcher.reload()).toEqual({ ok: true });
      expect(t.logged.at(-1)).toEqual(
        expect.objectContaining({ event: 'policy_reloaded', rules: 2, added: 1, removed: 1, changed: 1 }),
      );
      writeFileSync(t.file, ONE_RULE);
      expect(t.watcher.reload()).toEqual({ ok: true });
      expect(t.logged.at(-1)).toEqual(
        expect.objectContaining({ event: 'policy_reloaded', rules: 1, added: 0, removed: 1, changed: 1 }),
      );
    } finally {
      t.watcher.close();
    }
  });

  it('takes a file that only reorders the rules in use as unchanged (order does not change enforcement)', () => {
    const file = join(dir, 'reorder.yaml');
    writeFileSync(file, TWO_RULES);
    const policy = { current: loadPolicyFile(file) };
    const first = policy.current;
    const outcomes: Array<string | undefined> = [];
    let changes = 0;
    const watcher = watchPolicyFile(policy, file, {
      log: pino({ level: 'silent' }),
      onChange: () => changes++,
      observe: (o) => outcomes.push(o),
      clock: new FakeClock(),
    });
    try {
      const [head, ...rules] = TWO_RULES.split('\n  - ');
      writeFileSync(file, [head, ...rules.reverse()].join('\n  - ').replace(/\n*$/, '\n'));
      expect(loadPolicyFile(file).rules.map((r) => r.name)).toEqual(['api-db', 'web-api']);
      expect(watcher.reload()).toEqual({ ok: true });
      expect(policy.current).toBe(first);
      expect(changes).toBe(0);
      expect(outcomes).toEqual(['unchanged']);
    } finally {
      watcher.close();
    }
  });

  it('logs the reason once without a stack, and that a file fixed back to the rules in use is good', () => {
    const file = join(dir, 'recover.yaml');
    writeFileSync(file, ONE_RULE);
    const policy = { current: loadPolicyFile(file) };
    const first = policy.current;
    const logged: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l)) });
    const outcomes: Array<[string | undefined, boolean]> = [];
    let changes = 0;
    const watcher = watchPolicyFile(policy, file, {
      log,
      onChange: () => changes++,
      observe: (o, failing) => outcomes.push([o, failing]),
      clock: new FakeClock(),
    });
    try {
      writeFileSync(file, ONE_RULE.replace(`    to: ${API}\n`, ''));
      expect(watcher.reload().ok).toBe(false);
      const failed = logged.at(-1) as Record<string, unknown>;
      expect(failed['event']).toBe('policy_reload_failed');
      expect(failed['reason']).toBe(`policy ${file}: rules[0].to: is required`);
      expect(failed['code']).toBe('MESHAUTH_ERR_POLICY');
      expect(failed['err']).toBeUndefined();
      expect(JSON.stringify(failed).split('is required').length - 1).toBe(1);

      writeFileSync(file, ONE_RULE);
      expect(watcher.reload()).toEqual({ ok: true });
      expect(policy.current).toBe(first);
      expect(changes).toBe(0);
      expect(logged.at(-1)).toEqual(
        expect.objectContaining({ event: 'policy_reloaded', file, unchanged: true, rules: 1 }),
      );
      expect(watcher.reload()).toEqual({ ok: true });
      expect(logged).toHaveLength(2);
      expect(outcomes).toEqual([
        ['failed', true],
        ['unchanged', false],
        ['unchanged', false],
      ]);
    } finally {
      watcher.close();
    }
  });

  it('does not log a taken policy as reloaded when acting on it failed, and acts on it again', () => {
    const file = join(dir, 'listener.yaml');
    writeFileSync(file, ONE_RULE);
    const policy = { current: loadPolicyFile(file) };
    const logged: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l)) });
    const outcomes: Array<[string | undefined, boolean]> = [];
    let failWith: string | undefined = 'map write failed';
    let acts = 0;
    const watcher = watchPolicyFile(policy, file, {
      log,
      onChange: () => {
        acts++;
        if (failWith !== undefined) throw new Error(failWith);
      },
      observe: (o, failing) => outcomes.push([o, failing]),
      clock: new FakeClock(),
    });
    try {
      writeFileSync(file, TWO_RULES);
      expect(watcher.reload()).toEqual({ ok: true });
      expect(policy.current.rules).toHaveLength(2);
      expect(logged.map((l) => l['event'])).toEqual(['policy_reload_failed']);
      expect(logged[0]).toMatchObject({ applied: true, reason: 'map write failed' });
      // Failing until something acts on the policy in use.
      expect(outcomes).toEqual([['failed', true]]);

      // The same file again: acted on again (not "unchanged"), and still failing.
      const taken = policy.current;
      expect(watcher.reload()).toEqual({ ok: true });
      expect(acts).toBe(2);
      expect(policy.current).toBe(taken);
      expect(outcomes.at(-1)).toEqual(['failed', true]);

      // Acting succeeds now: reported as applied, no longer failing; the next reload is unchanged.
      failWith = undefined;
      expect(watcher.reload()).toEqual({ ok: true });
      expect(acts).toBe(3);
      expect(logged.at(-1)).toMatchObject({
        event: 'policy_reloaded',
        unchanged: true,
        retried: true,
        rules: 2,
      });
      expect(outcomes.at(-1)).toEqual(['applied', false]);
      expect(watcher.reload()).toEqual({ ok: true });
      expect(acts).toBe(3);
      expect(outcomes.at(-1)).toEqual(['unchanged', false]);
    } finally {
      watcher.close();
    }
  });

  it('stops failing when the policy in use is acted on by a later resync, not while the file is refused', () => {
    const file = join(dir, 'acted.yaml');
    writeFileSync(file, ONE_RULE);
    const policy = { current: loadPolicyFile(file) };
    const log = pino({ level: 'silent' });
    const outcomes: Array<[string | undefined, boolean]> = [];
    let fail = true;
    const watcher = watchPolicyFile(policy, file, {
      log,
      onChange: () => {
        if (fail) throw new Error('map write failed');
      },
      observe: (o, failing) => outcomes.push([o, failing]),
      clock: new FakeClock(),
    });
    try {
      writeFileSync(file, TWO_RULES);
      watcher.reload();
      expect(outcomes).toEqual([['failed', true]]);
      watcher.acted();
      expect(outcomes).toEqual([
        ['failed', true],
        [undefined, false],
      ]);
      watcher.acted(); // nothing left to clear
      expect(outcomes).toHaveLength(2);

      // Taken-but-failed, then a refused file: an acted resync does not clear the refusal.
      writeFileSync(file, ONE_RULE);
      watcher.reload();
      writeFileSync(file, 'rules: [');
      expect(watcher.reload().ok).toBe(false);
      watcher.acted();
      expect(outcomes.slice(2)).toEqual([
        ['failed', true],
        ['failed', true],
      ]);
      fail = false;
      writeFileSync(file, ONE_RULE);
      expect(watcher.reload()).toEqual({ ok: true });
      // The rules equal the policy in use, which was acted on since: unchanged, no longer failing.
      expect(outcomes.at(-1)).toEqual(['unchanged', false]);
    } finally {
      watcher.close();
    }
  });
});
