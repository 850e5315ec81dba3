/**
 * Command-line flags of the bench scripts: `--help` lists them, and an unknown flag or a bad value
 * is one line on stderr and exit status 2 (as the meshauth programs' usage errors), not the stack
 * trace node:util's parseArgs throws. parseBenchArgs is the pure part; benchArgs prints and exits.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** One flag: `--name <value>` (string) or `--name` (boolean). */
export interface BenchFlag {
  type: 'string' | 'boolean';
  /** What the flag does, for --help (one line). */
  help: string;
  /** Placeholder of the value in --help ("n", "dir"); string flags only; default "value". */
  value?: string;
  default?: string | boolean;
  /** A string flag whose value must be a number of at least `min`, a whole one when `integer`. */
  number?: { min: number; integer?: boolean };
}

/** What --help says around the flags. */
export interface BenchUsage {
  /** Script name without .js ("audit"): "node dist/bench/audit.js". */
  name: string;
  /** What the benchmark measures (one or more lines). */
  summary: string;
  /** Printed after the flags: environment, privileges, tools needed. */
  notes?: string;
  /** Positional arguments, for the usage line ("[name ...]"); none accepted when absent. */
  positionals?: string;
}

type Values<F extends Record<string, BenchFlag>> = {
  [K in keyof F]: F[K] extends { type: 'boolean' }
    ? boolean
    : F[K] extends { default: string }
      ? string
      : string | undefined;
};

export type BenchArgs<F extends Record<string, BenchFlag>> =
  | { kind: 'run'; values: Values<F>; positionals: string[] }
  | { kind: 'help'; text: string }
  | { kind: 'error'; message: string };

/** The command a person types to run the script. */
export function scriptPath(name: string): string {
  return `node dist/bench/${name}.js`;
}

/** The --help text of a script. */
export function benchHelp(usage: BenchUsage, flags: Record<string, BenchFlag>): string {
  const rows: [string, string][] = Object.entries(flags).map(([name, f]) => [
    f.type === 'string' ? `--${name} <${f.value ?? 'value'}>` : `--${name}`,
    f.default !== undefined && f.default !== false ? `${f.help} (default: ${String(f.default)})` : f.help,
  ]);
  rows.push(['-h, --help', 'show this help']);
  const width = Math.max(...rows.map(([l]) => l.length));
  return (
    `usage: ${scriptPath(usage.name)} [options]${usage.positionals ? ` ${usage.positionals}` : ''}\n\n` +
    `${usage.summary.trim()}\n\nOptions:\n` +
    rows.map(([l, h]) => `  ${l.padEnd(width)}  ${h}\n`).join('') +
    (usage.notes ? `\n${usage.notes.trim()}\n` : '')
  );
}

/** parseArgs's error, said in one line: "unknown option '--x'", "option '--n' needs a value", ... */
function parseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? String(err);
  const quoted = /'([^']+)'/.exec(msg)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option '${quoted ?? msg}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = quoted?.replace(/ <value>$/, '') ?? '?';
      if (/does not take an argument/.test(msg)) return `option '${flag}' takes no value`;
      if (/ambiguous/.test(msg))
        return `option '${flag}' needs a value (one that starts with "-" goes as ${flag}=-...)`;
      return `option '${flag}' needs a value`;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument '${quoted ?? msg}'`;
    default:
      return msg.split('\n')[0]!;
  }
}

/** Parse `argv` against `flags` (plus -h/--help); never throws, never exits. */
export function parseBenchArgs<F extends Record<string, BenchFlag>>(
  usage: BenchUsage,
  flags: F,
  argv: readonly string[],
): BenchArgs<F> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        ...Object.fromEntries(
          Object.entries(flags).map(([name, f]) => [
            name,
            f.default === undefined ? { type: f.type } : { type: f.type, default: f.default },
          ]),
        ),
        help: { type: 'boolean', short: 'h' },
      } as ParseArgsConfig['options'],
      allowPositionals: usage.positionals !== undefined,
      strict: true,
    });
  } catch (err) {
    return { kind: 'error', message: parseError(err) };
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values['help']) return { kind: 'help', text: benchHelp(usage, flags) };
  for (const [name, f] of Object.entries(flags)) {
    const v = values[name];
    if (!f.number || typeof v !== 'string') continue;
    const n = /^[0-9]+(\.[0-9]+)?$/.test(v.trim()) ? Number(v) : NaN;
    if (!(n >= f.number.min) || (f.number.integer && !Number.isInteger(n)))
      return {
        kind: 'error',
        message: `--${name}: must be a ${f.number.integer ? 'whole ' : ''}number of at least ${f.number.min} (got ${JSON.stringify(v)})`,
      };
  }
  delete values['help'];
  return { kind: 'run', values: values as Values<F>, positionals: parsed.positionals };
}

/**
 * The flags of this process's command line. Prints --help to stdout and exits 0; prints a usage
 * error to stderr ("bench audit: unknown option '--x' (run node dist/bench/audit.js --help)") and
 * exits 2.
 */
export function benchArgs<F extends Record<string, BenchFlag>>(
  usage: BenchUsage,
  flags: F,
  argv: readonly string[] = process.argv.slice(2),
): { values: Values<F>; positionals: string[] } {
  const r = parseBenchArgs(usage, flags, argv);
  if (r.kind === 'help') {
    process.stdout.write(r.text);
    process.exit(0);
  }
  if (r.kind === 'error') {
    process.stderr.write(
      `bench ${usage.name}: ${r.message} (run ${scriptPath(usage.name)} --help for usage)\n`,
    );
    process.exit(2);
  }
  return { values: r.values, positionals: r.positionals };
}
