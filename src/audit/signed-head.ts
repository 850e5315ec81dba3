import { createPrivateKey, hash, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { parseCertificates, verifyX509Svid, type TrustBundles } from '../spiffe/index.js';
import { SignedHeadError } from './errors.js';

/**
 * Signed audit heads: a node's chain head (last seq and its row hash) as a C2SP transparency-log
 * checkpoint (c2sp.org/tlog-checkpoint) inside a C2SP signed note (c2sp.org/signed-note), signed
 * with the node's X509-SVID key.
 *
 * Note text (every line ends in U+000A):
 *
 *     <origin>                     the node's SPIFFE ID without "spiffe://" (schema-less, no spaces or '+')
 *     <tree size>                  the seq of the head row: rows ever appended (seqs start at 1)
 *     <root hash>                  base64 of the head row's SHA-256 hash (32 bytes)
 *     meshauth-time <ms>           extension line: when the head was signed, ms since the epoch
 *     meshauth-node <node name>    extension line: the node's name
 *
 * Differences from tlog-checkpoint, on purpose: the "root hash" is the head of a hash chain, not the
 * root of an RFC 6962 Merkle tree, so consistency between two heads is shown by the rows between
 * them (src/audit/verify.ts), not by a Merkle consistency proof; witnesses of the C2SP
 * tlog-witness protocol can parse and cosign the note but cannot ask for such a proof. The two
 * extension lines carry what the audit trail needs (time, node) and are covered by the signature.
 *
 * Signature line: `— <key name> base64(key ID || signature)`, key name = origin (the spec's
 * SHOULD). The SVID keys are ECDSA P-256, so the signature is signed-note type 0x02 ("ECDSA as
 * implemented by transparency-dev/witness"): an ASN.1 DER ECDSA signature over SHA-256 of the note
 * text, and the key ID is the first four bytes (big-endian) of SHA-256 over the DER
 * SubjectPublicKeyInfo of the leaf certificate's public key — the rule the signed-note spec gives
 * for 0x02, which (unlike Ed25519's 0x01) hashes neither the key name nor a type byte. A verifier
 * that already holds the node's SVID recomputes the ID from the leaf and ignores lines that do
 * not match, as the spec requires for unknown keys.
 */

/** The head of one node's audit chain. */
export interface AuditHead {
  /** Checkpoint origin: the node's SPIFFE ID without the scheme. */
  origin: string;
  /** Seq of the head row (= rows ever appended). */
  treeSize: number;
  /** SHA-256 hash of the head row, 32 bytes (the genesis hash, zeros, when treeSize is 0). */
  hash: Buffer;
  /** When it was signed, ms since the epoch. */
  atMs: number;
  /** The node's name. */
  node: string;
}

/** A signed head that passed verification. */
export interface VerifiedHead {
  head: AuditHead;
  /** SPIFFE ID of the signer's X509-SVID (equals `spiffe://` + origin). */
  spiffeId: string;
  /** The signed note as received. */
  note: string;
}

const EM_DASH = '\u2014';
const TIME_EXT = 'meshauth-time ';
const NODE_EXT = 'meshauth-node ';
/** signed-note signature type of ECDSA (c2sp.org/signed-note, "Signature types"). */
export const NOTE_SIG_TYPE_ECDSA = 0x02;
/** Longest note accepted (the spec asks verifiers to bound size; ours carry one signature). */
export const MAX_NOTE_BYTES = 8192;
const NAME_RE = /^[^\s+]+$/u;

/** Checkpoint origin of a SPIFFE ID: the ID without `spiffe://`. */
export function originOf(spiffeId: string): string {
  if (!spiffeId.startsWith('spiffe://'))
    throw new SignedHeadError('malformed', `signed head: ${spiffeId} is not a SPIFFE ID`);
  return spiffeId.slice('spiffe://'.length);
}

/** The note text of a head (c2sp.org/tlog-checkpoint "Note text"), ending in a newline. */
export function checkpointText(h: AuditHead): string {
  if (!NAME_RE.test(h.origin))
    throw new SignedHeadError('malformed', `signed head: origin "${h.origin}" has spaces or '+'`);
  if (!Number.isSafeInteger(h.treeSize) || h.treeSize < 0)
    throw new SignedHeadError(
      'malformed',
      `signed head: tree size ${h.treeSize} is not a non-negative integer`,
    );
  if (h.hash.length !== 32) throw new SignedHeadError('malformed', 'signed head: hash must be 32 bytes');
  if (!/^[^\s]+$/u.test(h.node))
    throw new SignedHeadError('malformed', `signed head: node name "${h.node}" is empty or has spaces`);
  return `${h.origin}\n${h.treeSize}\n${h.hash.toString('base64')}\n${TIME_EXT}${Math.trunc(h.atMs)}\n${NODE_EXT}${h.node}\n`;
}

/** Parse note text written by checkpointText; throws SignedHeadError('malformed'). */
export function parseCheckpointText(text: string): AuditHead {
  const bad = (why: string): never => {
    throw new SignedHeadError('malformed', `signed head: ${why}`);
  };
  if (!text.endsWith('\n')) bad('note text does not end in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) bad('checkpoint needs origin, tree size and root hash lines');
  const [origin, size, root, ...ext] = lines as [string, string, string, ...string[]];
  if (!origin || !NAME_RE.test(origin)) bad('origin line is empty or has spaces or "+"');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(size))
    bad(`tree size "${size}" is not a decimal number without leading zeros`);
  const treeSize = Number(size);
  if (!Number.isSafeInteger(treeSize)) bad('tree size is too large');
  const hashBytes = Buffer.from(root, 'base64');
  if (hashBytes.length !== 32 || hashBytes.toString('base64') !== root)
    bad('root hash is not base64 of 32 bytes');
  let atMs: number | undefined;
  let node: string | undefined;
  for (const l of ext) {
    if (l === '') bad('empty extension line');
    if (l.startsWith(TIME_EXT)) {
      const v = l.slice(TIME_EXT.length);
      if (atMs !== undefined || !/^[0-9]{1,16}$/.test(v)) bad('bad or repeated meshauth-time line');
      atMs = Number(v);
    } else if (l.startsWith(NODE_EXT)) {
      const v = l.slice(NODE_EXT.length);
      if (node !== undefined || !/^[^\s]+$/u.test(v)) bad('bad or repeated meshauth-node line');
      node = v;
    }
  }
  if (atMs === undefined || node === undefined)
    bad('meshauth-time and meshauth-node extension lines are required');
  return { origin, treeSize, hash: hashBytes, atMs: atMs!, node: node! };
}

/** signed-note key ID for an ECDSA key (type 0x02): SHA-256(DER SubjectPublicKeyInfo)[:4]. */
export function ecdsaKeyId(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return hash('sha256', spki, 'buffer').subarray(0, 4);
}

/** What signs heads: the node's current X509-SVID (chain PEM, leaf first) and its key (PEM). */
export interface HeadSigningSvid {
  chainPem: string | Buffer;
  keyPem: string | Buffer;
}

/** Sign a head with the SVID's key; returns the signed note (text, blank line, one signature line). */
export function signHead(h: AuditHead, svid: HeadSigningSvid): string {
  const text = checkpointText(h);
  const [leafDer] = parseCertificates(svid.chainPem);
  if (!leafDer) throw new SignedHeadError('malformed', 'signed head: the SVID has no certificate');
  const leaf = new X509Certificate(leafDer);
  if (leaf.publicKey.asymmetricKeyType !== 'ec')
    throw new SignedHeadError('malformed', 'signed head: the SVID key is not an ECDSA key');
  const key = createPrivateKey(svid.keyPem);
  const sig = sign('sha256', Buffer.from(text, 'utf8'), { key, dsaEncoding: 'der' });
  const blob = Buffer.concat([ecdsaKeyId(leaf.publicKey), sig]).toString('base64');
  return `${text}\n${EM_DASH} ${h.origin} ${blob}\n`;
}

/** Split a signed note into text and signature lines (c2sp.org/signed-note "Format"). */
export function splitNote(note: string): { text: string; sigs: { name: string; blob: Buffer }[] } {
  const bad = (why: string): never => {
    throw new SignedHeadError('malformed', `signed head: ${why}`);
  };
  if (Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES) bad(`note is longer than ${MAX_NOTE_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) bad('note contains control characters');
  if (!note.endsWith('\n')) bad('note does not end in a newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) bad('no blank line before the signatures');
  const text = note.slice(0, split + 1);
  const sigLines = note.slice(split + 2, -1).split('\n');
  const sigs = sigLines.map((l) => {
    const m = /^\u2014 ([^\s+]+) ([A-Za-z0-9+/]+={0,2})$/u.exec(l);
    if (!m) bad('signature line is not "— <key name> <base64>"');
    const blob = Buffer.from(m![2]!, 'base64');
    if (blob.length < 5) bad('signature shorter than a key ID');
    return { name: m![1]!, blob };
  });
  if (sigs.length === 0 || sigs.length > 16) bad('a note carries 1..16 signatures');
  return { text, sigs };
}

export interface OpenSignedHeadOptions {
  /** Time at which the SVID chain is checked (default now). */
  now?: Date;
  /** When set, the signer's SPIFFE ID must be this one (the mTLS peer that submitted it). */
  expectSpiffeId?: string;
}

/**
 * Verify a signed head against the signer's X509-SVID chain (DER, leaf first) and the trust
 * bundles: the chain must be a valid X509-SVID (SPIFFE X509-SVID §5), its SPIFFE ID must be the
 * note's origin (and opts.expectSpiffeId), and a signature line named after the origin with the
 * leaf key's ID must verify over the note text. Throws SignedHeadError with reason
 * malformed | untrusted-signer | wrong-node | bad-signature.
 */
export function openSignedHead(
  note: string,
  chainDer: readonly Buffer[],
  bundles: TrustBundles,
  opts: OpenSignedHeadOptions = {},
): VerifiedHead {
  const { text, sigs } = splitNote(note);
  const head = parseCheckpointText(text);
  let spiffeId: string;
  let leaf: X509Certificate;
  try {
    const v = verifyX509Svid(chainDer, bundles, opts.now ? { now: opts.now } : {});
    spiffeId = v.spiffeId.toString();
    leaf = v.leaf;
  } catch (err) {
    const reason = (err as { reason?: string }).reason ?? (err as Error).message;
    throw new SignedHeadError('untrusted-signer', `signed head: signer certificate rejected: ${reason}`, {
      cause: err,
    });
  }
  if (`spiffe://${head.origin}` !== spiffeId)
    throw new SignedHeadError(
      'wrong-node',
      `signed head: origin ${head.origin} is not the signer ${spiffeId}`,
    );
  if (opts.expectSpiffeId !== undefined && opts.expectSpiffeId !== spiffeId)
    throw new SignedHeadError(
      'wrong-node',
      `signed head: signed by ${spiffeId}, but submitted by ${opts.expectSpiffeId}`,
    );
  const keyId = ecdsaKeyId(leaf.publicKey);
  const mine = sigs.filter((s) => s.name === head.origin && s.blob.subarray(0, 4).equals(keyId));
  if (mine.length === 0)
    throw new SignedHeadError(
      'bad-signature',
      `signed head: no signature by ${head.origin} with the SVID's key ID`,
    );
  for (const s of mine) {
    const ok = verify(
      'sha256',
      Buffer.from(text, 'utf8'),
      { key: leaf.publicKey, dsaEncoding: 'der' },
      s.blob.subarray(4),
    );
    if (!ok)
      throw new SignedHeadError('bad-signature', 'signed head: signature does not verify over the note text');
  }
  return { head, spiffeId, note };
}
