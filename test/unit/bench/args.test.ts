import { describe, expect, it } from 'vitest';
import { benchHelp, parseBenchArgs, type BenchFlag } from '../../../bench/args.js';

const USAGE = { name: 'demo', summary: 'What it measures.', notes: 'Needs root.' };
const FLAGS = {
  events: { type: 'string', value: 'n', number: { min: 1, integer: true }, help: 'rows' },
  seconds: { type: 'string', value: 's', default: '3', number: { min: 0.5 }, help: 'length' },
  json: { type: 'boolean', default: false, help: 'print JSON' },
} satisfies Record<string, BenchFlag>;

describe('bench flags', () => {
  it('parses the declared flags, with defaults', () => {
    expect(parseBenchArgs(USAGE, FLAGS, ['--events', '10', '--json'])).toEqual({
      kind: 'run',
      values: { events: '10', seconds: '3', json: true },
      positionals: [],
    });
    expect(parseBenchArgs(USAGE, FLAGS, [])).toEqual({
      kind: 'run',
      values: { seconds: '3', json: false },
      positionals: [],
    });
  });

  it('answers -h and --help with every flag, its value and default, and the notes', () => {
    const text = benchHelp(USAGE, FLAGS);
    for (const argv of [['--help'], ['-h'], ['--events', '5', '--help']])
      expect(parseBenchArgs(USAGE, FLAGS, argv)).toEqual({ kind: 'help', text });
    expect(text).toBe(
      'usage: node dist/bench/demo.js [options]\n\nWhat it measures.\n\nOptions:\n' +
        '  --events <n>   rows\n' +
        '  --seconds <s>  length (default: 3)\n' +
        '  --json         print JSON\n' +
        '  -h, --help     show this help\n\nNeeds root.\n',
    );
  });

  it.each<[string[], string]>([
    [['--bogus'], "unknown option '--bogus'"],
    [['-z'], "unknown option '-z'"],
    [['--events'], "option '--events' needs a value"],
    [['--json=yes'], "option '--json' takes no value"],
    [['extra'], "unexpected argument 'extra'"],
    [['--events', 'ten'], '--events: must be a whole number of at least 1 (got "ten")'],
    [['--events', '0'], '--events: must be a whole number of at least 1 (got "0")'],
    [['--events', '1.5'], '--events: must be a whole number of at least 1 (got "1.5")'],
    [['--seconds', '0.1'], '--seconds: must be a number of at least 0.5 (got "0.1")'],
    [
      ['--seconds', '-1'],
      'option \'--seconds\' needs a value (one that starts with "-" goes as --seconds=-...)',
    ],
    [['--seconds=-1'], '--seconds: must be a number of at least 0.5 (got "-1")'],
  ])('%j is a one-line usage error: %s', (argv, message) => {
    expect(parseBenchArgs(USAGE, FLAGS, argv)).toEqual({ kind: 'error', message });
  });

  it('takes positionals only when the script declares them', () => {
    expect(parseBenchArgs({ ...USAGE, positionals: '[name ...]' }, {}, ['audit', 'relay'])).toEqual({
      kind: 'run',
      values: {},
      positionals: ['audit', 'relay'],
    });
  });
});
