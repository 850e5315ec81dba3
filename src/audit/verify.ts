import { rowHash, type ChainFields } from './canonical.js';
import { AuditQueryError } from './errors.js';
import { toFields, type EventRow, type NameOf } from './rows.js';

export type ChainProblemKind =
  'edited' | 'deleted' | 'reordered' | 'broken-link' | 'truncated' | 'anchor' | 'checkpoint';

/** A (seq, hash) pair taken from an earlier report and kept off the node. */
export interface ChainCheckpoint {
  seq: number;
  /** Hex SHA-256 of that row. */
  hash: string;
}

export interface ChainReport {
  ok: boolean;
  /** Rows checked. */
  checked: number;
  /** Seq the chain starts after (last row removed by retention; 0 when nothing was removed). */
  anchorSeq: number;
  firstSeq: number | null;
  lastSeq: number | null;
  /** Hash (hex) of the last row: record it with lastSeq elsewhere and pass it back as a checkpoint. */
  lastHash: string | null;
  problem?: { seq: number; kind: ChainProblemKind; message: string };
}

/** Everything verifyChainRows reads, from one consistent snapshot of the store. */
export interface ChainSnapshot {
  /** The retention anchor: seq and hash of the last row removed (0 and the genesis hash when none). */
  anchor: { seq: number; hash: Buffer };
  /** The recorded chain head: seq and hash of the last row appended. */
  head: { seq: number; hash: Buffer };
  /** Every stored row in ascending seq order. */
  rows: Iterable<EventRow>;
  /** Resolves a names id; undefined for a missing name. */
  nameOf: NameOf;
  /** (seq, hash) pairs recorded earlier, kept off the node. */
  checkpoints?: readonly ChainCheckpoint[];
}

/**
 * Walks a snapshot of the chain; a pure function, so the rows may come from SQLite or from memory.
 * Reports the first row that is inconsistent and why: edited (its hash no longer matches its fields), deleted (a seq is missing), reordered (the row
 * hashes correctly only under another seq), broken-link (prev_hash is not the previous row's hash:
 * a neighbour was rewritten with a recomputed hash), truncated (rows after the last one are
 * missing), anchor (the first row does not continue from the retention anchor), checkpoint (the
 * row at a checkpoint's seq does not have the hash recorded then: the trail was rewritten from
 * there on and its hashes recomputed, which the chain alone cannot show).
 */
export function verifyChainRows(input: ChainSnapshot): ChainReport {
  const { anchor, head, rows, nameOf } = input;
  const checkpoints = input.checkpoints ?? [];
  checkCheckpoints(checkpoints);
  const want = new Map(checkpoints.map((c) => [c.seq, c.hash]));
  const report: ChainReport = {
    ok: true,
    checked: 0,
    anchorSeq: anchor.seq,
    firstSeq: null,
    lastSeq: null,
    lastHash: null,
  };
  const fail = (seq: number, kind: ChainProblemKind, message: string): ChainReport => ({
    ...report,
    ok: false,
    problem: { seq, kind, message },
  });

  let expectSeq = anchor.seq + 1;
  let prevHash = anchor.hash;
  let lastRetention: { seq: number; anchorSeq: unknown } | undefined;
  for (const r of rows) {
    if (report.firstSeq === null) report.firstSeq = r.seq;
    if (r.seq !== expectSeq) {
      const missing = r.seq - 1 === expectSeq ? `seq ${expectSeq} is` : `seqs ${expectSeq}..${r.seq - 1} are`;
      return fail(
        expectSeq,
        'deleted',
        `audit verify: ${missing} missing (deleted rows)${report.checked === 0 ? ' before the first stored row' : ''}`,
      );
    }
    const fields = toFields(r, nameOf);
    const computed = rowHash(fields);
    if (!computed.equals(r.hash)) {
      const other = findSeqThatHashes(fields, r.hash);
      if (other !== undefined) {
        return fail(
          r.seq,
          'reordered',
          `audit verify: row at seq ${r.seq} was written as seq ${other} (rows reordered)`,
        );
      }
      return fail(
        r.seq,
        'edited',
        `audit verify: seq ${r.seq}: stored hash does not match its fields (row edited)`,
      );
    }
    if (!r.prev_hash.equals(prevHash)) {
      if (report.checked === 0) {
        return fail(
          r.seq,
          'anchor',
          `audit verify: seq ${r.seq}: does not continue from the chain anchor (seq ${anchor.seq})`,
        );
      }
      return fail(
        r.seq,
        'broken-link',
        `audit verify: seq ${r.seq}: prev_hash is not the hash of seq ${r.seq - 1} (seq ${r.seq - 1} or ${r.seq} was rewritten)`,
      );
    }
    if (r.type === 'retention') {
      const d = r.details ? (JSON.parse(r.details) as { anchorSeq?: unknown }) : {};
      lastRetention = { seq: r.seq, anchorSeq: d.anchorSeq };
    }
    prevHash = r.hash;
    expectSeq = r.seq + 1;
    report.checked++;
    report.lastSeq = r.seq;
    report.lastHash = r.hash.toString('hex');
    const expected = want.get(r.seq);
    if (expected !== undefined && expected !== report.lastHash) {
      return fail(
        r.seq,
        'checkpoint',
        `audit verify: seq ${r.seq}: hash ${report.lastHash} differs from the checkpoint ${expected} (the trail was rewritten from here on)`,
      );
    }
  }
  if (head.seq >= expectSeq) {
    return fail(
      expectSeq,
      'truncated',
      `audit verify: seqs ${expectSeq}..${head.seq} are missing (rows deleted from the end)`,
    );
  }
  if (!head.hash.equals(prevHash) && head.seq > anchor.seq) {
    return fail(head.seq, 'edited', `audit verify: seq ${head.seq}: does not match the recorded chain head`);
  }
  if (anchor.seq > 0 && (lastRetention === undefined || lastRetention.anchorSeq !== anchor.seq)) {
    return fail(
      anchor.seq + 1,
      'anchor',
      `audit verify: chain anchor (seq ${anchor.seq}) is not the one recorded by the last retention event`,
    );
  }
  for (const [seq, hash] of want) {
    if (seq === anchor.seq && anchor.seq > 0) {
      if (anchor.hash.toString('hex') !== hash) {
        return fail(
          seq,
          'checkpoint',
          `audit verify: seq ${seq}: the retention anchor's hash differs from the checkpoint`,
        );
      }
    } else if (seq < anchor.seq) {
      // removed by retention: the chain from the anchor on cannot speak for it; say so, fail closed
      return fail(
        seq,
        'checkpoint',
        `audit verify: checkpoint seq ${seq} was removed by retention (the trail starts after seq ${anchor.seq}); use a later checkpoint`,
      );
    } else if (seq > (report.lastSeq ?? anchor.seq)) {
      return fail(
        seq,
        'checkpoint',
        `audit verify: checkpoint seq ${seq} is past the last stored row (${report.lastSeq ?? 'none'}): rows were removed from the end`,
      );
    }
  }
  return report;
}

/** Throws AuditQueryError unless every checkpoint is a positive seq and 64 hex digits. */
export function checkCheckpoints(checkpoints: readonly ChainCheckpoint[]): void {
  for (const c of checkpoints) {
    if (!Number.isSafeInteger(c.seq) || c.seq <= 0 || !/^[0-9a-f]{64}$/.test(c.hash)) {
      throw new AuditQueryError(
        `audit verify: checkpoint must be <seq>:<64 hex digits of the hash>, got ${c.seq}:${c.hash}`,
      );
    }
  }
}

function findSeqThatHashes(fields: ChainFields, hash: Buffer): number | undefined {
  // A row moved by a raw UPDATE of seq still hashes correctly under its original seq; look nearby.
  for (let d = 1; d <= 4096; d++) {
    for (const s of [fields.seq - d, fields.seq + d]) {
      if (s <= 0) continue;
      if (rowHash({ ...fields, seq: s }).equals(hash)) return s;
    }
  }
  return undefined;
}
