import { SignedHeadError } from './errors.js';
import { openSignedHead, type AuditHead } from './signed-head.js';
import type { AuditStore } from './store.js';
import type { ChainProblemKind, ChainReport } from './verify.js';
import type { SignedHeadEnvelope } from './witness.js';
import type { TrustBundles } from '../spiffe/index.js';

/** A signed head fetched from one witness, with where it came from. */
export interface FetchedHead extends SignedHeadEnvelope {
  /** The witness it came from (address), for the report. */
  witness: string;
  /** When that witness received it (its own clock), ms since the epoch; 0 or absent = unknown. */
  witnessedAtMs?: number;
}

export interface VerifyAgainstHeadsOptions {
  /** Most a head's meshauth-time may differ from its witness receive time, ms. Default 5 min. */
  maxSkewMs?: number;
}

export type WitnessProblemKind = ChainProblemKind | 'rewritten' | 'truncated' | 'fork';

export interface WitnessReport {
  ok: boolean;
  /** The chain walk (rows, anchor, head) as verifyChain reports it. */
  chain: ChainReport;
  /** Heads whose signature verified, per distinct seq, that were compared with the rows. */
  headsMatched: number;
  /** Heads at seqs retention removed (only the anchor's own hash can be compared). */
  headsPruned: number;
  /** Highest witnessed seq whose hash the trail still has. */
  lastMatchedSeq: number | null;
  /** Seqs at which the node signed two heads with different hashes (ascending; empty when none). */
  forkedSeqs?: number[];
  /** Heads refused because their signature or signer did not verify: a witness cannot frame the node. */
  refused: { witness: string; reason: string; message: string }[];
  /**
   * The first problem: `rewritten` (the row at a witnessed seq has another hash; the trail was
   * rewritten somewhere in `range`), `truncated` (witnessed seqs are past the stored head), `fork`
   * (the node signed two heads with one seq and different hashes), or a chain problem.
   */
  problem?: { seq: number; kind: WitnessProblemKind; message: string; range?: [number, number] };
}

/**
 * Check a node's trail against heads witnessed elsewhere (`meshauth audit verify --witnesses`).
 * Each head's signature is checked first (against `spiffeId`'s X509-SVID chain carried with it and
 * the trust bundles, at the witness's receive time, not the time the head claims; a head without a
 * receive time, or dated more than maxSkewMs from it, is refused): a head that does not verify is
 * listed in `refused` and otherwise ignored, so a witness that alters what it received cannot make
 * an honest trail look rewritten, and a head signed with a stolen key and back-dated does not
 * count. The verified heads are then compared with the rows: first divergent witnessed
 * seq, with the range (last matching witnessed seq + 1 .. that seq) the rewrite started in.
 */
export function verifyAgainstHeads(
  store: AuditStore,
  spiffeId: string,
  fetched: readonly FetchedHead[],
  bundles: TrustBundles,
  opts: VerifyAgainstHeadsOptions = {},
): WitnessReport {
  const maxSkewMs = opts.maxSkewMs ?? 300_000;
  const refused: WitnessReport['refused'] = [];
  const bySeq = new Map<number, AuditHead & { witness: string }>();
  // seqs at which the node signed two heads with different hashes, with the first two seen
  const forks = new Map<number, { a: AuditHead & { witness: string }; b: AuditHead & { witness: string } }>();
  for (const f of fetched) {
    let head: AuditHead;
    try {
      // the chain is checked at the time the witness received the head (a head outlives its
      // SVID), never at the time the head claims: that one the key holder chooses
      const at = f.witnessedAtMs;
      if (at === undefined || !Number.isSafeInteger(at) || at <= 0)
        throw new SignedHeadError('malformed', 'audit verify: the witness gave no receive time for the head');
      head = openSignedHead(f.note, f.certChain, bundles, {
        now: new Date(at),
        expectSpiffeId: spiffeId,
      }).head;
      if (Math.abs(head.atMs - at) > maxSkewMs)
        throw new SignedHeadError(
          'clock-skew',
          `audit verify: head signed at ${new Date(head.atMs).toISOString()} but received by the witness at ${new Date(at).toISOString()} (more than ${maxSkewMs} ms apart)`,
        );
    } catch (err) {
      const reason = err instanceof SignedHeadError ? err.reason : 'malformed';
      refused.push({ witness: f.witness, reason, message: (err as Error).message });
      continue;
    }
    const seen = bySeq.get(head.treeSize);
    if (seen && !seen.hash.equals(head.hash) && !forks.has(head.treeSize))
      forks.set(head.treeSize, { a: seen, b: { ...head, witness: f.witness } });
    if (!seen) bySeq.set(head.treeSize, { ...head, witness: f.witness });
  }
  const stats = store.stats();
  const seqs = [...bySeq.keys()].sort((a, b) => a - b);
  const inRange = seqs.filter((s) => s >= stats.anchorSeq && s > 0);
  // a head at seq 0 (an empty trail) says nothing to compare
  const headsPruned = seqs.filter((s) => s > 0 && s < stats.anchorSeq).length;
  const past = inRange.filter((s) => s > stats.lastSeq);
  // a forked seq has no single witnessed hash to compare the row with: it is reported as a fork,
  // and the rows are compared with every other witnessed seq, so a rewrite before it still shows
  const checkable = inRange.filter((s) => s <= stats.lastSeq && !forks.has(s));
  const chain = store.verifyChain(
    checkable.map((s) => ({ seq: s, hash: bySeq.get(s)!.hash.toString('hex') })),
  );
  const report: WitnessReport = {
    ok: true,
    chain,
    headsMatched: 0,
    headsPruned,
    lastMatchedSeq: null,
    refused,
  };
  const lastOkSeq = chain.ok ? Number.POSITIVE_INFINITY : chain.problem!.seq - 1;
  for (const s of checkable) {
    if (s > lastOkSeq) break;
    report.headsMatched++;
    report.lastMatchedSeq = s;
  }
  report.forkedSeqs = [...forks.keys()].sort((a, b) => a - b);
  const firstFork = report.forkedSeqs[0];
  // the earliest divergence wins: a fork after a rewritten seq is reported as the rewrite
  if (firstFork !== undefined && (chain.ok || firstFork < chain.problem!.seq)) {
    const { a, b } = forks.get(firstFork)!;
    return {
      ...report,
      ok: false,
      problem: {
        seq: firstFork,
        kind: 'fork',
        message: `audit verify: the node signed two heads for seq ${firstFork} (${a.witness}: ${a.hash.toString('hex')}, ${b.witness}: ${b.hash.toString('hex')}): its trail forked`,
      },
    };
  }
  if (!chain.ok) {
    const p = chain.problem!;
    if (p.kind === 'checkpoint') {
      const from = (report.lastMatchedSeq ?? stats.anchorSeq) + 1;
      const w = bySeq.get(p.seq);
      return {
        ...report,
        ok: false,
        problem: {
          seq: p.seq,
          kind: 'rewritten',
          range: [from, p.seq],
          message: `audit verify: seq ${p.seq} differs from the head witnessed by ${w?.witness ?? 'a witness'} (hash ${w?.hash.toString('hex') ?? '?'}); the trail matches its witnessed heads up to seq ${from - 1} and was rewritten at a seq in ${from}..${p.seq}`,
        },
      };
    }
    return { ...report, ok: false, problem: { seq: p.seq, kind: p.kind, message: p.message } };
  }
  if (past.length > 0) {
    const first = stats.lastSeq + 1;
    const w = bySeq.get(past.at(-1)!);
    return {
      ...report,
      ok: false,
      problem: {
        seq: first,
        kind: 'truncated',
        range: [first, past.at(-1)!],
        message: `audit verify: ${w?.witness ?? 'a witness'} holds a head at seq ${past.at(-1)}, but the trail ends at seq ${stats.lastSeq}: seqs ${first}..${past.at(-1)} were removed`,
      },
    };
  }
  return report;
}
