import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ApiClient } from '../../api/index.js';
import {
  AuditStore,
  verifyAgainstHeads,
  type ChainCheckpoint,
  type ChainReport,
  type FetchedHead,
  type WitnessReport,
} from '../../audit/index.js';
import { fileErrorReason } from '../../errors.js';
import { parseCertificates, parseSpiffeId } from '../../spiffe/index.js';
import { cliDurationMs, explain, hostPortProblem, readPem, timeoutMsOf } from '../connect.js';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';
import { parseOutput } from '../format.js';
import { flagValue } from '../../usage.js';

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
  if (!m || !(Number(m[1]) > 0)) {
    throw new Error(
      'expected <seq>:<hash>, a seq of 1 or more and the hash as 64 hex digits (from an earlier report)',
    );
  }
  // past 2^53 the seq would be rounded to another one (and reported as that)
  if (!Number.isSafeInteger(Number(m[1])))
    throw new Error(`the seq ${m[1]} is larger than any seq a trail has (${Number.MAX_SAFE_INTEGER})`);
  return [...prev, { seq: Number(m[1]), hash: m[2]!.toLowerCase() }];
}

/** --witnesses: host:port[,host:port...] (repeatable). */
function parseTargets(text: string, prev: string[] = []): string[] {
  const out = text
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (out.length === 0) throw new Error('no host:port');
  for (const t of out) {
    const problem = hostPortProblem(t);
    if (problem) throw new Error(problem);
  }
  return [...prev, ...out];
}

interface WitnessFetch {
  heads: FetchedHead[];
  failed: { witness: string; message: string }[];
}

/** Heads of `spiffeId` from every witness, over the TCP API with the global --tls-* options. */
async function fetchHeads(
  ctx: CliContext,
  targets: readonly string[],
  spiffeId: string,
): Promise<WitnessFetch> {
  const g = ctx.globals();
  const need = 'audit verify --witnesses needs';
  const tls = {
    certChainPem: readPem('--tls-cert', g.tlsCert, 'certificates', need),
    keyPem: readPem('--tls-key', g.tlsKey, 'key', need),
    caPem: readPem('--tls-bundle', g.tlsBundle, 'certificates', need),
  };
  const timeoutMs = timeoutMsOf(g);
  const out: WitnessFetch = { heads: [], failed: [] };
  await Promise.all(
    targets.map(async (address) => {
      const client = new ApiClient({ address, tls, timeoutMs });
      try {
        for (const h of await client.listWitnessedHeads(spiffeId)) {
          if (!h.head) continue;
          out.heads.push({
            note: h.head.note,
            certChain: h.head.certChain.map((c) => Buffer.from(c)),
            witness: address,
            witnessedAtMs: Number(h.witnessedAtMs),
          });
        }
      } catch (err) {
        out.failed.push({ witness: address, message: explain(err, client, 'witness').message });
      } finally {
        client.close();
      }
    }),
  );
  return out;
}

function printWitnessReport(
  ctx: CliContext,
  path: string,
  r: WitnessReport,
  fetched: WitnessFetch,
  targets: readonly string[],
): void {
  for (const f of fetched.failed) ctx.io.out(`  witness ${f.witness}: unreachable: ${f.message}\n`);
  for (const x of r.refused) ctx.io.out(`  witness ${x.witness}: head refused (${x.reason}): ${x.message}\n`);
  if (r.ok) {
    ctx.io.out(
      `audit trail matches ${r.headsMatched} witnessed heads${r.lastMatchedSeq === null ? '' : ` (up to seq ${r.lastMatchedSeq})`} from ${targets.length - fetched.failed.length}/${targets.length} witnesses; ${r.chain.checked} events verified in ${path}\n`,
    );
    if (r.headsPruned > 0)
      ctx.io.out(`  ${r.headsPruned} witnessed heads predate retention (anchor seq ${r.chain.anchorSeq})\n`);
  } else {
    const p = r.problem!;
    ctx.io.out(
      `audit trail DIVERGES from its witnessed heads: first divergent seq ${p.seq} (${p.kind})${p.range ? `, rewritten at a seq in ${p.range[0]}..${p.range[1]}` : ''}\n  ${p.message}\n`,
    );
  }
  const forks = r.forkedSeqs ?? [];
  if (forks.length > 0 && !(r.problem?.kind === 'fork' && forks.length === 1))
    ctx.io.out(`  the node signed two different heads at seq ${forks.join(', ')} (fork)\n`);
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
      flagValue(parseCheckpoint),
    )
    .option(
      '--witnesses <host:port,...>',
      "witnesses (other nodes' or the relay's TCP API) to fetch this node's signed heads from; the trail must match every head whose signature verifies (uses --tls-cert, --tls-key, --tls-bundle)",
      flagValue(parseTargets),
    )
    .option(
      '--max-skew <duration>',
      "with --witnesses: most a head's signing time may differ from the time its witness received it (the witnesses' own limit; a bare number is seconds)",
      '300',
    )
    .option(
      '--node-id <spiffe-id>',
      "this node's SPIFFE ID (the heads' signer); default: asked from the daemon",
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
  meshauth audit verify --checkpoint 120344:9f0c…(64 hex digits)
  meshauth audit verify --witnesses node-b:4251,node-c:4251,relay:4252 --tls-cert me.crt --tls-key me.key --tls-bundle ca.pem`,
    )
    .action(
      async (o: {
        db?: string;
        output: string;
        checkpoint?: ChainCheckpoint[];
        witnesses?: string[];
        nodeId?: string;
        maxSkew: string;
      }) => {
        const format = parseOutput(o.output);
        // the trail is read from its file: the relay has none of the nodes' files to point at
        if (ctx.globals().relay && !o.db)
          throw new CliError(
            "audit verify reads one node's audit database: run it on that node, or pass --db <path>; --relay has no database to verify",
            2,
          );
        if (o.witnesses?.length) {
          await verifyWitnessed(ctx, o, format);
          return;
        }
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
        } else if (r.ok && r.checked === 0) {
          // intact, and nothing in it: no rows, no retention anchor, a chain head at seq 0
          ctx.io.out(`audit trail is empty: no events to verify in ${path}\n`);
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
      },
    );
}

async function verifyWitnessed(
  ctx: CliContext,
  o: { db?: string; witnesses?: string[]; nodeId?: string; checkpoint?: ChainCheckpoint[]; maxSkew: string },
  format: string,
): Promise<void> {
  const targets = o.witnesses!;
  const skewMs = cliDurationMs('audit verify: --max-skew', o.maxSkew, 86_400_000);
  let nodeId = o.nodeId;
  let path = o.db;
  if (!nodeId || !path) {
    await ctx.withClient(async (c) => {
      if (!path) path = (await c.status()).audit?.path;
      if (!nodeId) {
        const origin = (await c.signHead()).note.split('\n')[0];
        if (origin) nodeId = `spiffe://${origin}`;
      }
    });
  }
  if (!path)
    throw new CliError('audit verify: the daemon did not report its audit database; pass --db <path>');
  if (!nodeId) throw new CliError('audit verify --witnesses: pass --node-id <spiffe-id> of this node', 2);
  let trustDomain: string;
  try {
    trustDomain = parseSpiffeId(nodeId).trustDomain.name;
  } catch (err) {
    throw new CliError(`audit verify: --node-id ${nodeId}: ${(err as Error).message}`, 2);
  }
  const fetched = await fetchHeads(ctx, targets, nodeId);
  const bundlePath = ctx.globals().tlsBundle!;
  let cas: Buffer[];
  try {
    cas = parseCertificates(readFileSync(bundlePath));
  } catch (err) {
    throw new CliError(`--tls-bundle ${bundlePath}: ${fileErrorReason(err)}`, 2);
  }
  if (!existsSync(path)) throw new CliError(`audit verify: ${path}: no such file`);
  const store = AuditStore.open({ path, readonly: true });
  let r: WitnessReport;
  try {
    r = verifyAgainstHeads(store, nodeId, fetched.heads, new Map([[trustDomain, cas]]), {
      maxSkewMs: skewMs,
    });
  } finally {
    store.close();
  }
  if (format === 'json') {
    ctx.io.out(
      JSON.stringify({ path, nodeId, witnesses: targets, unreachable: fetched.failed, ...r }) + '\n',
    );
  } else {
    printWitnessReport(ctx, path, r, fetched, targets);
  }
  if (!r.ok) throw new CliError('', 1);
  if (r.headsMatched === 0 && r.headsPruned === 0)
    throw new CliError('audit verify: the witnesses hold no head of this node; nothing was compared', 1);
  // fail closed: with no witness answering there is nothing to compare with
  if (fetched.failed.length === targets.length)
    throw new CliError('audit verify: no witness could be reached; nothing was compared', 1);
}
