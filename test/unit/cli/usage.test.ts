import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerDevCaCommands } from '../../../src/cli/commands/dev-ca.js';
import { registerSvidCommands } from '../../../src/cli/commands/svid.js';
import type { CliIo } from '../../../src/cli/io.js';
import { run } from '../../../src/cli/program.js';
import { buildDaemonProgram } from '../../../src/cmd/program.js';
import { describeOptions } from '../../../src/config/index.js';
import { DevCa } from '../../../src/identity/index.js';
import { main as relayMain } from '../../../src/relay/main.js';
import { HELP_WIDTH, USAGE_EXIT } from '../../../src/usage.js';

/** The three programs, each run with argv and a terminal width; stdout, stderr, exit status. */
type Result = { code: number; out: string; err: string };
type Program = (argv: string[], columns?: number) => Promise<Result>;

const meshauth: Program = async (argv, columns) => {
  let out = '';
  let err = '';
  const io: CliIo = { out: (t) => (out += t), err: (t) => (err += t), env: {}, columns: () => columns };
  const code = await run(argv, io, [registerSvidCommands, registerDevCaCommands]);
  return { code, out, err };
};

const relay: Program = async (argv, columns) => {
  let out = '';
  let err = '';
  const code = await relayMain(argv, {
    out: (t) => (out += t),
    err: (t) => (err += t),
    columns: () => columns,
  });
  return { code, out, err };
};

// meshauthd's main starts the daemon; its flags are parsed by the same program it builds
const meshauthd: Program = async (argv, columns) => {
  let out = '';
  let err = '';
  const program = buildDaemonProgram({
    out: (t) => (out += t),
    err: (t) => (err += t),
    columns: () => columns,
  });
  try {
    program.parse(argv, { from: 'user' });
    return { code: 0, out, err };
  } catch (e) {
    expect(e).toBeInstanceOf(CommanderError);
    return { code: (e as CommanderError).exitCode === 0 ? 0 : USAGE_EXIT, out, err };
  }
};

const PROGRAMS: [string, Program][] = [
  ['meshauth', meshauth],
  ['meshauthd', meshauthd],
  ['meshauth-relay', relay],
];

const firstWord = (line: string): string => line.trim().split(/\s+/)[0] ?? '';

/**
 * Problems of a help text wrapped to `width`: a line longer than the width, or a line broken
 * although the next line's first word would have fitted on it (text wrapped twice, or broken by
 * hand before commander wrapped it).
 */
function wrapProblems(help: string, width: number): string[] {
  const lines = help.split('\n');
  // commander's part ends at the first blank line after the options that does not start another
  // section; notes added after it are the command's own text
  const options = lines.indexOf('Options:');
  let end = lines.length;
  for (let i = options; options >= 0 && i < lines.length; i++)
    if (lines[i] === '' && !/^(Commands|Arguments):/.test(lines[i + 1] ?? '')) {
      end = i;
      break;
    }
  const body = lines.slice(0, end);
  const problems: string[] = [];
  for (let i = 0; i < body.length; i++) {
    const line = body[i]!;
    if (line.length > width && /\s/.test(line.trim())) problems.push(`too long: ${line}`);
    const next = body[i + 1];
    if (!next?.trim() || !line.trim() || /^(Usage|Options|Commands|Arguments):/.test(next)) continue;
    // a continuation line is indented further than where its text starts on the line before
    const indent = (s: string) => s.length - s.trimStart().length;
    const column = line.search(/\S\s{2,}\S/) + 1;
    const descStart = column > 0 ? line.slice(column).search(/\S/) + column : indent(line);
    const isContinuation =
      indent(next) === descStart || (indent(next) === 0 && indent(line) === 0 && !line.endsWith(':'));
    if (isContinuation && line.length + 1 + firstWord(next).length <= width)
      problems.push(`broken early: ${JSON.stringify(line)} / ${JSON.stringify(next)}`);
  }
  return problems;
}

describe('help is wrapped once, to the terminal width', () => {
  for (const [name, program] of PROGRAMS) {
    for (const columns of [undefined, 80, 140]) {
      it(`${name} --help at ${columns ?? `no terminal (${HELP_WIDTH})`} columns`, async () => {
        const r = await program(['--help'], columns);
        expect(r.code).toBe(0);
        expect(r.out).toMatch(new RegExp(`^Usage: ${name} `));
        expect(wrapProblems(r.out, columns ?? HELP_WIDTH)).toEqual([]);
      });
    }
  }

  it('the check finds a description broken by hand', () => {
    const help = 'Usage: x\n\nA description broken\nby hand.\n\nOptions:\n  -a  one\n';
    expect(wrapProblems(help, 80)).toEqual(['broken early: "A description broken" / "by hand."']);
  });

  it('meshauth subcommands are wrapped the same way', async () => {
    for (const sub of [['events'], ['svid', 'verify'], ['dev-ca', 'issue'], ['audit', 'verify']]) {
      const r = await meshauth([...sub, '--help'], 80);
      expect(r.code).toBe(0);
      expect(wrapProblems(r.out, 80)).toEqual([]);
    }
  });
});

describe('usage errors read the same in all three programs', () => {
  for (const [name, program] of PROGRAMS) {
    it(`${name} --bogus: the problem, the --help hint, exit 2`, async () => {
      const r = await program(['--bogus']);
      expect(r).toEqual({
        code: 2,
        out: '',
        err: `${name}: unknown option '--bogus'\n(run ${name} --help for usage)\n`,
      });
    });
  }

  it('a subcommand names itself in the message and the hint', async () => {
    const r = await meshauth(['svid', 'verify', '--bundle', 'b.pem', '--bogus', 'x.pem']);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      "meshauth svid verify: unknown option '--bogus'\n(run meshauth svid verify --help for usage)\n",
    );
  });

  it('bad flag values found after parsing carry the same hint', async () => {
    const cli = await meshauth(['--timeout', '0', 'status']);
    expect(cli.code).toBe(2);
    expect(cli.err).toMatch(/^meshauth: --timeout: .*\n\(run meshauth --help for usage\)\n$/);
    const r = await relay(['--tls-cert', 'c', '--tls-key', 'k', '--tls-bundle', 'b', '--node-deadline', '0']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^meshauth-relay: --node-deadline: .*\n\(run meshauth-relay --help for usage\)\n$/);
  });
});

describe('flag values checked while parsing are usage errors too', () => {
  const HASH = 'ab'.repeat(32);
  it.each<[string, string[], string]>([
    [
      'a checkpoint without a 64-digit hash',
      ['--checkpoint', '1:abc'],
      "option '--checkpoint <seq:hash>' argument '1:abc' is invalid. expected <seq>:<hash>, a seq of 1 or more and the hash as 64 hex digits (from an earlier report)",
    ],
    [
      'a checkpoint at seq 0',
      ['--checkpoint', `0:${HASH}`],
      `option '--checkpoint <seq:hash>' argument '0:${HASH}' is invalid. expected <seq>:<hash>, a seq of 1 or more and the hash as 64 hex digits (from an earlier report)`,
    ],
    [
      // regression: before, exit 1 after reading the file, quoting the seq rounded (1e20, 2^53)
      'a checkpoint whose seq is past 2^53',
      ['--checkpoint', `9007199254740993:${HASH}`],
      `option '--checkpoint <seq:hash>' argument '9007199254740993:${HASH}' is invalid. the seq 9007199254740993 is larger than any seq a trail has (9007199254740991)`,
    ],
    [
      'a witness without a port',
      ['--witnesses', 'w:1,w'],
      `option '--witnesses <host:port,...>' argument 'w:1,w' is invalid. must be host:port with a port between 1 and 65535 (got "w")`,
    ],
    [
      'no witness at all',
      ['--witnesses', ' , '],
      "option '--witnesses <host:port,...>' argument ' , ' is invalid. no host:port",
    ],
  ])('meshauth audit verify: %s exits 2 with the hint', async (_what, argv, problem) => {
    const r = await meshauth(['audit', 'verify', '--db', 'unused.db', ...argv]);
    expect(r).toEqual({
      code: 2,
      out: '',
      err: `meshauth audit verify: ${problem}\n(run meshauth audit verify --help for usage)\n`,
    });
  });

  it('a good checkpoint still parses (the file is then read: exit 1 when it is missing)', async () => {
    const r = await meshauth([
      'audit',
      'verify',
      '--db',
      join(tmpdir(), 'meshauth-none.db'),
      '--checkpoint',
      `7:${HASH}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no such file/);
  });
});

describe('exit statuses: the same three in all three programs, listed in each --help', () => {
  for (const [name, program] of PROGRAMS) {
    it(`${name} --help ends with them`, async () => {
      const r = await program(['--help']);
      expect(r.out).toMatch(
        /\nExit status:\n {2}0 {2}\S.*\n {2}1 {2}\S.*\n {2}2 {2}(usage|usage or configuration) error\b.*\n$/,
      );
    });
  }

  it('meshauth-relay: a runtime failure at start (the port taken) exits 1, not 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-usage-relay-'));
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const ca = await DevCa.create('usage.test');
      const svid = await ca.issue('spiffe://usage.test/relay');
      writeFileSync(join(dir, 'relay.crt'), svid.chainPem);
      writeFileSync(join(dir, 'relay.key'), svid.keyPem, { mode: 0o600 });
      writeFileSync(join(dir, 'ca.pem'), ca.caPem);
      const port = (taken.address() as AddressInfo).port;
      const r = await relay([
        ...['--tls-cert', join(dir, 'relay.crt'), '--tls-key', join(dir, 'relay.key')],
        ...['--tls-bundle', join(dir, 'ca.pem'), '--allow', 'spiffe://usage.test/ops'],
        ...['--node', 'a=127.0.0.1:1', '--audit-db', join(dir, 'a.db'), '--listen', `127.0.0.1:${port}`],
        ...['--log-level', 'error'],
      ]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/^meshauth-relay: could not start: .*\n$/);
    } finally {
      taken.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('out-of-range flag values say what they got', () => {
  const TLS = ['--tls-cert', 'c', '--tls-key', 'k', '--tls-bundle', 'b', '--allow', 'spiffe://td/ops'];
  const NODE = ['--node', 'a=127.0.0.1:1'];
  it.each<[string, Program, string[], string]>([
    [
      'meshauth',
      meshauth,
      ['--timeout', '3601', 'status'],
      '--timeout: must be a duration greater than 0 and at most 1h (e.g. 5s, 500ms; a bare number is seconds) (got "3601")',
    ],
    [
      'meshauth',
      meshauth,
      ['--relay', 'relay:0', 'status'],
      '--relay: must be host:port with a port between 1 and 65535 (got "relay:0")',
    ],
    [
      'meshauth',
      meshauth,
      ['events', '--limit', '-1'],
      '--limit: must be a whole number, 0 for all (got "-1")',
    ],
    ['meshauth', meshauth, ['status', '-o', 'yaml'], '-o/--output: must be table or json (got "yaml")'],
    [
      'meshauth',
      meshauth,
      ['audit', 'verify', '--witnesses', 'w:1', '--max-skew', '0'],
      'audit verify: --max-skew: must be a duration greater than 0 and at most 1d (e.g. 5s, 500ms; a bare number is seconds) (got "0")',
    ],
    [
      'meshauth',
      meshauth,
      ['dev-ca', 'issue', '--dir', 'd', '--spiffe-id', 'spiffe://td/x', '--out', 'o', '--ttl', '10ms'],
      'dev-ca issue: --ttl: must be a duration of at least 1s, like 30m, 1h, 1d (got "10ms")',
    ],
    [
      'meshauth-relay',
      relay,
      [...TLS, ...NODE, '--node-deadline', '601'],
      '--node-deadline: must be a duration between 1ms and 10m (e.g. 30s, 5m; a bare number is seconds) (got "601")',
    ],
    [
      'meshauth-relay',
      relay,
      [...TLS, ...NODE, '--witness-max-skew', '0.5'],
      '--witness-max-skew: must be a duration between 1s and 1d (e.g. 30s, 5m; a bare number is seconds) (got "0.5")',
    ],
    [
      'meshauth-relay',
      relay,
      [...TLS, '--kubernetes', '--api-port', '70000'],
      '--api-port: must be a port between 1 and 65535 with --kubernetes (got "70000")',
    ],
    [
      'meshauth-relay',
      relay,
      [...TLS, ...NODE, '--listen', 'x:99999'],
      '--listen: must be host:port with a port between 0 and 65535 (got "x:99999")',
    ],
  ])('%s %j', async (name, program, argv, problem) => {
    const r = await program(argv);
    expect(r.code).toBe(2);
    expect(r.err).toBe(`${name}: ${problem}\n(run ${name} --help for usage)\n`);
  });
});

describe('an unreadable file given by a flag is reported once, without its path twice', () => {
  const missing = join(tmpdir(), 'meshauth-usage-test-missing.key');

  it('meshauth --tls-key', async () => {
    const r = await meshauth([
      '--address',
      '127.0.0.1:9',
      '--tls-cert',
      missing,
      '--tls-key',
      missing,
      '--tls-bundle',
      missing,
      'status',
    ]);
    expect(r).toEqual({
      code: 2,
      out: '',
      err: `meshauth: --tls-cert ${missing}: no such file\n(run meshauth --help for usage)\n`,
    });
  });

  it('meshauth-relay --tls-key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-usage-relay-'));
    try {
      const ca = await DevCa.create('usage.test');
      const svid = await ca.issue('spiffe://usage.test/relay');
      writeFileSync(join(dir, 'relay.crt'), svid.chainPem);
      writeFileSync(join(dir, 'ca.pem'), ca.caPem);
      const tls = ['--tls-cert', join(dir, 'relay.crt'), '--tls-bundle', join(dir, 'ca.pem')];
      const argv = [
        ...tls,
        '--allow',
        'spiffe://usage.test/ops',
        '--node',
        'a=127.0.0.1:1',
        '--audit-db',
        join(dir, 'a.db'),
      ];
      const r = await relay([...argv, '--tls-key', join(dir, 'relay.key')]);
      // a file named on the command line: a configuration error, exit 2 as in meshauthd
      expect(r).toEqual({
        code: 2,
        out: '',
        err: `meshauth-relay: could not start: --tls-key ${join(dir, 'relay.key')}: no such file\n`,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('meshauthd --help describes durations', () => {
  it('says a bare number is milliseconds and prints each duration setting with its range', async () => {
    const r = await meshauthd(['--help'], 200);
    expect(r.code).toBe(0);
    const help = r.out.replace(/\s+/g, ' ');
    expect(help).toContain('a bare number is milliseconds ("5000" is 5s, not 5000 seconds)');
    expect(help).toMatch(
      /--handshake-timeout <duration> +Deadline for one complete handshake \(100ms\.\.5m\) \(file: handshake\.timeout/,
    );
    expect(help).toMatch(
      /--audit-max-age <duration> +Audit events older than this are deleted \(1m\.\.3650d\)/,
    );
    for (const o of describeOptions().filter((d) => d.kind === 'duration')) {
      expect(o.description, o.flag).toMatch(/\(\d+(ms|s|m|h|d)\.\.\d+(ms|s|m|h|d)\)$/);
    }
  });
});

describe('meshauthd --help describes the attach points', () => {
  it('says what each form of --datapath-attach does', async () => {
    const r = await meshauthd(['--help'], 100);
    expect(r.code).toBe(0);
    const help = r.out.replace(/\s+/g, ' ');
    const attach = help.slice(
      help.indexOf('--datapath-attach '),
      help.indexOf('--datapath-signal-throttle '),
    );
    expect(attach).toContain(
      'tc:<iface>:<ingress|egress>[:<semantics>] checks the packets at that tc hook, <semantics> (default: the hook) naming the local end: egress the source, ingress the destination;',
    );
    expect(attach).toContain(
      'cgroup:<path>[:<ingress|egress>] checks the packets the sockets of a cgroup v2 subtree send (egress, default) or receive;',
    );
    expect(attach).toContain(
      'sockops:<cgroup path> checks nothing, it shortens the first SYN timeout of unauthenticated pairs (datapath.synRto)',
    );
  });
});

describe('meshauthd --help names its fatal headings', () => {
  it('says which heading goes with which exit status', async () => {
    const r = await meshauthd(['--help'], 100);
    expect(r.code).toBe(0);
    const help = r.out.replace(/\s+/g, ' ');
    expect(help).toContain(
      'A fatal error is one message on stderr. "meshauthd: invalid configuration:" and one line per problem (exit status 2)',
    );
    expect(help).toContain('"meshauthd: failed to start: <reason>" (exit status 1)');
    expect(help).toContain('1 runtime failure ("failed to start: ..."), or an unclean stop');
    expect(help).toContain('2 usage or configuration error (a bad option; "invalid configuration: ...")');
  });
});
