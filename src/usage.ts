import { InvalidArgumentError, type Command } from 'commander';

/**
 * Help and usage errors shared by meshauth, meshauthd and meshauth-relay, so that the three read
 * and behave alike.
 *
 * Help: descriptions are written as paragraphs without line breaks of their own ("\n\n" between
 * paragraphs) and wrapped once, by commander, to the terminal's width, or to HELP_WIDTH columns
 * when stdout is not a terminal (a pipe, a file). A description broken by hand as well would be
 * wrapped twice: short lines in odd places.
 *
 * Usage errors (unknown option or command, missing or bad argument, a bad flag value found after
 * parsing): "<command>: <problem>" and "(run <command> --help for usage)" on stderr, exit status 2
 * (USAGE_EXIT). Commander's own usage errors carry status 1; callers map every CommanderError that
 * is not --help or --version to USAGE_EXIT. A flag value checked while parsing goes through
 * flagValue, so that it is one of commander's usage errors too.
 *
 * Exit statuses, the same in all three programs and listed in each one's --help (exitStatusHelp):
 * 0 success, 1 a runtime failure (or, for meshauth, a check that found a problem), 2 a usage or
 * configuration error: something the person who started the program has to change.
 */

/** Columns help is wrapped to when stdout is not a terminal. */
export const HELP_WIDTH = 100;

/** Exit status of a usage error, in all three programs. */
export const USAGE_EXIT = 2;

/**
 * A commander option value parser that reports a bad value as a usage error: whatever `parse`
 * throws becomes commander's InvalidArgumentError, printed as "<command>: option '--flag <value>'
 * argument 'x' is invalid. <problem>" with the usage hint, and exit status USAGE_EXIT. Without it
 * an error thrown by a value parser escapes commander as an ordinary failure (exit 1).
 */
export function flagValue<T>(parse: (value: string, previous: T) => T): (value: string, previous: T) => T {
  return (value, previous) => {
    try {
      return parse(value, previous);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

/**
 * The exit status paragraph of a program's --help: `success`, `failure` and `usage` say what 0, 1
 * and 2 mean for it (one line each, no final period).
 */
export function exitStatusHelp(success: string, failure: string, usage: string): string {
  return `\nExit status:\n  0  ${success}\n  1  ${failure}\n  ${USAGE_EXIT}  ${usage}`;
}

/** Where help and errors go; the process's stdout and stderr by default. */
export interface UsageOutput {
  out(text: string): void;
  err(text: string): void;
  /** Terminal width of stdout; undefined when it is not a terminal. */
  columns?: () => number | undefined;
}

/** Standard streams watched for a write error, and those whose reader went away. */
const watched = new WeakSet<NodeJS.WriteStream>();
const closedStreams = new WeakSet<NodeJS.WriteStream>();

/**
 * Writes to a standard stream; once its reader has gone away (EPIPE, e.g. `meshauthd --help | head
 * -1`) further writes are dropped instead of the stream's unhandled 'error' event ending the
 * process with a stack trace (the CLI's processIo does the same for meshauth).
 */
function writeStd(stream: NodeJS.WriteStream, text: string): void {
  if (!watched.has(stream)) {
    watched.add(stream);
    // a write error on a standard stream cannot be reported on it; stop writing to it
    stream.on('error', () => closedStreams.add(stream));
  }
  if (!closedStreams.has(stream)) stream.write(text);
}

const processOutput: UsageOutput = {
  out: (t) => writeStd(process.stdout, t),
  err: (t) => writeStd(process.stderr, t),
  columns: () => (process.stdout.isTTY ? process.stdout.columns : undefined),
};

/** "meshauth svid verify": the command's name with its parents'. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** The hint line printed after every usage error of `cmd`. */
export function usageHint(cmd: Command): string {
  return `(run ${commandPath(cmd)} --help for usage)`;
}

/** A usage error found after parsing, printed like commander's own: the problem, then the hint. */
export function usageErrorText(cmd: Command, problem: string): string {
  return `${commandPath(cmd)}: ${problem}\n${usageHint(cmd)}\n`;
}

/**
 * Applies the shared help and usage-error behaviour to `program` and every subcommand under it
 * (call it after the subcommands are registered). Errors throw CommanderError (exitOverride)
 * instead of exiting the process.
 */
export function configureUsage(program: Command, output: UsageOutput = processOutput): Command {
  const width = () => output.columns?.() ?? HELP_WIDTH;
  const apply = (cmd: Command): void => {
    const hint = usageHint(cmd);
    const name = commandPath(cmd);
    cmd
      .exitOverride()
      .showHelpAfterError(hint)
      // commander leaves descriptions unwrapped when fewer than 40 columns remain beside the
      // flags (meshauthd's longest flags on an 80-column terminal): wrap them narrow instead
      .configureHelp({ sortOptions: false, minWidthToWrap: 24 })
      .configureOutput({
        writeOut: (s) => output.out(s),
        writeErr: (s) => output.err(s),
        getOutHelpWidth: width,
        getErrHelpWidth: width,
        // commander says "error: unknown option '--x'"; name the command instead
        outputError: (s, write) => write(s.replace(/^error: /, `${name}: `)),
      });
    for (const sub of cmd.commands) apply(sub);
  };
  apply(program);
  return program;
}
