import { processIo } from './io.js';
import { run, type CommandRegistrar } from './program.js';
import { invokedDirectly } from '../invoked-directly.js';

export { run, buildProgram, VERSION, type CommandRegistrar } from './program.js';
export type { CliIo } from './io.js';

/** Command groups that live in their own files (svid, dev-ca). */
async function extraCommands(): Promise<CommandRegistrar[]> {
  const out: CommandRegistrar[] = [];
  try {
    out.push((await import('./commands/svid.js')).registerSvidCommands);
    out.push((await import('./commands/dev-ca.js')).registerDevCaCommands);
  } catch (err) {
    // A build without these command groups still serves the API commands.
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
  }
  return out;
}

/** Entry point of the `meshauth` binary. */
export async function main(): Promise<void> {
  const ctl = new AbortController();
  process.once('SIGINT', () => ctl.abort());
  process.once('SIGTERM', () => ctl.abort());
  const io = processIo(ctl.signal, () => ctl.abort());
  const code = await run(process.argv.slice(2), io, await extraCommands());
  process.exitCode = code;
}

if (invokedDirectly(import.meta.url)) await main();
