import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { AuditStore, type ChainCheckpoint, type ChainReport } from '../../audit/index.js';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';
import { parseOutput } from '../format.js';

function verifyFile(path: string, checkpoints: readonly ChainCheckpoint[]): ChainReport {
  if (!existsSync(path)) throw new CliError(`audit verify: ${path}: no such file`);
  const store = AuditStore.open({ path, readonly: true });
  try {
    return store.verifyChain(checkpoints);
  } finally {
    store.close();
  }
}

function parseCheckpoint(text: string, prev: ChainCheckpoint[] = []): ChainCheckpoint[] {
  const m = /^(\d+):([0-9a-fA-F]{64})$/.exec(text.trim());
  if (!m) {
    throw new CliError(
      `audit verify: --checkpoint ${JSON.stringify(text)}: expected <seq>:<hash>, the hash as 64 hex digits (from an earlier report)`,
    );
  }
  return [...prev, { seq: Number(m[1]), hash: m[2]!.toLowerCase() }];
}

export function registerAuditCommands(program: Command, ctx: CliContext): void {
  const audit = program.command('audit').description('Audit trail maintenance');
  audit
    .command('verify')
    .description(
      'Check the hash chain of the audit trail; reports the first edited, deleted or reordered event',
    )
    .option('--db <path>', 'verify this database file directly (works without the daemon)')
    .option(
      '--checkpoint <seq:hash>',
      'a seq and hash an earlier report printed, kept off the node; detects a trail rewritten from there on with recomputed hashes (repeatable)',
      parseCheckpoint,
    )
    .option('-o, --output <format>', 'table or json', 'table')
    .addHelpText(
      'after',
      `
Without --db the daemon is asked where its database is and the file is read directly.
The report ends with the last row's seq and hash. The chain alone shows edits, deletions and
reordering, but not a trail rewritten from some row on by someone who recomputed every later hash:
record the head elsewhere from time to time and pass it back with --checkpoint.
Exit status: 0 when the chain is intact, 1 when it is not.

Examples:
  meshauth audit verify
  meshauth audit verify --db /var/lib/meshauth/audit.db -o json
  meshauth audit verify --checkpoint 120344:9f0c…(64 hex digits)`,
    )
    .action(async (o: { db?: string; output: string; checkpoint?: ChainCheckpoint[] }) => {
      const format = parseOutput(o.output);
      const path =
        o.db ??
        (await ctx.withClient(async (c) => {
          const p = (await c.status()).audit?.path;
          if (!p)
            throw new CliError(
              'audit verify: the daemon did not report its audit database; pass --db <path>',
            );
          return p;
        }));
      const r = verifyFile(path, o.checkpoint ?? []);
      if (format === 'json') {
        ctx.io.out(JSON.stringify({ path, ...r }) + '\n');
      } else if (r.ok) {
        ctx.io.out(
          `audit chain OK: ${r.checked} events verified (seq ${r.firstSeq ?? '-'}..${r.lastSeq ?? '-'}${
            r.anchorSeq > 0 ? `, continuing from retention anchor seq ${r.anchorSeq}` : ''
          }) in ${path}\n`,
        );
        if (r.lastSeq !== null) ctx.io.out(`  head: ${r.lastSeq}:${r.lastHash}\n`);
      } else {
        ctx.io.out(
          `audit chain BROKEN at seq ${r.problem!.seq} (${r.problem!.kind}): ${r.problem!.message}\n`,
        );
        ctx.io.out(`  ${r.checked} events before it verified; file ${path}\n`);
      }
      if (!r.ok) throw new CliError('', 1);
    });
}
