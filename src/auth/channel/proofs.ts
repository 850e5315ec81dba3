import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Svid, TrustBundles } from '../../spiffe/index.js';
import type { Clock } from '../../time.js';
import { HandshakeError, messageOf } from '../handshake/index.js';
import { earliestNotAfterMs } from '../handshake/index.js';
import { verifyPeerChain, type VerifiedPeer } from '../handshake/index.js';
import type { ResponderAuditPacer } from '../audit-pacing.js';
import type { ServerAuthenticated } from '../manager.js';
import {
  chainAnchors,
  trustDomainOf,
  trustLost,
  type BundleFingerprints,
  type ChainAnchors,
  type EntryTrust,
} from '../trust.js';
import {
  AuthenticatorError,
  authenticatorRequestContext,
  createAuthenticator,
  decodeRequest,
  encodeRequest,
  REQUEST_CONTEXT_BYTES,
  verifyAuthenticator,
  type AuthenticatorConnection,
  type AuthenticatorRequest,
  type TlsRole,
} from './exported-authenticator.js';
import { MAX_REQUESTS_PER_FRAME, type ChannelMessage, type ChannelMessageBody } from './protocol.js';

/** What the proof exchange needs of its channel (ChannelConnection; a fake in unit tests). */
export interface ProofChannel extends AuthenticatorConnection {
  /** Channel id, the same on both ends. */
  readonly id: string;
  /** Our TLS role on the channel. */
  readonly role: TlsRole;
  readonly peerNode: string;
  readonly tlsVersion: string;
  readonly cipher: string;
  /** The channel has closed (a pair that waited for the audit queue is then not written). */
  readonly closed?: boolean;
  send(body: ChannelMessageBody): boolean;
}

/** A workload identity the peer proved on this channel. */
export interface RemoteProof {
  spiffeId: string;
  /** Serial numbers of the presented chain, leaf first. */
  serials: string[];
  notAfterMs: number;
  /** Earliest notAfter of the chain and the bundle authorities anchoring it. */
  expiresAtMs: number;
  anchors: ChainAnchors;
  /** Random id of this proof (audit). */
  proofId: string;
  acceptedAtMs: number;
}

interface LocalProof {
  svid: Svid;
  state: 'queued' | 'sent' | 'accepted' | 'refused';
  reason?: string;
  refusedAtMs?: number;
  /** Earliest notAfter of our chain and our anchors (computed when sent). */
  expiresAtMs: number;
  anchors?: ChainAnchors;
}

/** Which proofs a pair decision used (audit details). */
export interface ChannelUse {
  localProof: { spiffeId: string; serial: string };
  remoteProof: { spiffeId: string; serials: string[]; proofId: string };
  localSerial: string;
  remoteSerials: string[];
  remoteNotAfterMs: number;
}

export type PairReadiness =
  | { ok: true; use: ChannelUse & { expiresAtMs: number; trust: EntryTrust } }
  | { ok: false; final: boolean; reason: string; message: string };

export interface ProofEvent {
  reason: string;
  message: string;
  stage: 'proof' | 'pair' | 'message';
  localId?: string | undefined;
  remoteId?: string | undefined;
}

export interface ProofExchangeOptions {
  channel: ProofChannel;
  identity: { svid(spiffeId: string): Svid | undefined; bundles(): TrustBundles };
  isWorkloadOnNode: (spiffeId: string, node: string) => boolean;
  clock: Clock;
  maxEntryTtlMs: number;
  /** Authenticator requests kept outstanding toward the peer. */
  requestPool: number;
  onPairRequested: (r: ServerAuthenticated) => void;
  /**
   * Paces the reverse entries by this node's audit queue (the ResponderAuditPacer shared with the
   * handshake server): a pair message waits while the queue is above its high-water mark, for at
   * most pairBudgetMs, and is answered pair-result ok:false reason `audit-busy` when it has not
   * drained by then (nothing written).
   */
  auditPacer?: Pick<ResponderAuditPacer, 'admit'>;
  /** How long a pair message may wait for the audit queue (ms). Default 5000. */
  pairBudgetMs?: number;
  onEvent: (e: ProofEvent) => void;
  /** Any proof or acceptance changed (wakes pairs waiting on this channel). */
  onChange: () => void;
}

/**
 * A refusal (the peer refused our proof, or does not hold an identity we asked for) is final for
 * pairs this long; after it the proof is sent, or the identity asked for, again: inventories,
 * placements and SVIDs change, and a channel lives long.
 */
export const REFUSAL_HOLD_MS = 5000;

/** Requests the peer sent that we have not used yet, at most this many (more are refused). */
const MAX_PEER_REQUESTS = 4 * MAX_REQUESTS_PER_FRAME;

// Path validation of a chain already verified under the same bundle object is not repeated
// (the bundle object is replaced on every update, so a new bundle verifies afresh). The cache keeps
// the verdict's fields only, not the chain: the caller has the chain it just received, and a
// cached Buffer would pin the pooled slab it was cut from (kilobytes per proof).
type VerifiedFields = Omit<VerifiedPeer, 'chainDer'>;
const verifiedChains = new WeakMap<TrustBundles, LRUCache<string, VerifiedFields>>();

function verifyCached(chainDer: Buffer[], bundles: TrustBundles, id: string, nowMs: number): VerifiedFields {
  let cache = verifiedChains.get(bundles);
  if (!cache) {
    cache = new LRUCache({ max: 4096 });
    verifiedChains.set(bundles, cache);
  }
  const h = createHash('sha256').update(id).update('\0');
  for (const der of chainDer) h.update(der);
  const key = h.digest('base64');
  const hit = cache.get(key);
  if (hit && hit.earliestNotAfterMs > nowMs) return hit;
  const v = verifyPeerChain(chainDer, bundles, id, new Date(nowMs));
  const fields: VerifiedFields = {
    spiffeId: v.spiffeId,
    serials: v.serials,
    notAfterMs: v.notAfterMs,
    earliestNotAfterMs: v.earliestNotAfterMs,
  };
  cache.set(key, fields);
  return fields;
}

/**
 * The RFC 9261 identity proofs of one node channel, both ways.
 *
 * Each side keeps `requestPool` authenticator requests outstanding toward the other (each request
 * has a fresh random certificate_request_context and is answered at most once), so a proof costs
 * one message and one signature, without a round trip. For each of our workloads the peer needs we
 * answer one request with an authenticator (chain + CertificateVerify with the workload key +
 * Finished over this channel's exporter); the peer verifies it, checks the workload runs on our
 * node, and answers with its verdict. A proof lives as long as the channel and its certificates;
 * a renewed SVID is proved again.
 */
/** Pair messages of one channel whose acknowledgement someone waits for (peerWrote). */
const PAIR_ACK_WAITERS = 1024;

interface PairAck {
  promise: Promise<boolean>;
  resolve: (ok: boolean) => void;
}

export class ProofExchange {
  private readonly outstanding = new Map<string, AuthenticatorRequest>();
  private readonly peerRequests: AuthenticatorRequest[] = [];
  private readonly local = new Map<string, LocalProof>();
  private readonly queue: string[] = [];
  private readonly remote = new Map<string, RemoteProof>();
  private readonly unavailable = new Map<string, { reason: string; atMs: number }>();
  private readonly wanted = new Set<string>();
  private readonly pairAcks = new Map<number, PairAck>();
  /** Ends the waits of this channel's pair messages for the audit queue when the channel closes. */
  private readonly ended = new AbortController();
  private pairSeq = 0;
  /** Authenticators verified and refused on this channel (bench, metrics). */
  readonly counters = { verified: 0, refused: 0, signed: 0, pairsIn: 0, pairsRefused: 0 };

  constructor(private readonly o: ProofExchangeOptions) {}

  private get peerRole(): 'client' | 'server' {
    return this.o.channel.role === 'client' ? 'server' : 'client';
  }

  /**
   * The channel closed: pair messages still waiting for the audit queue leave the wait at once
   * (aborted, nothing written, not counted as refused), so a closed channel holds none of the
   * pacer's places (ResponderAuditPacer maxWaiting) for the rest of their budget. Idempotent.
   */
  close(): void {
    this.ended.abort();
  }

  /** Offer the peer our requests and prove the identities it will need. */
  start(identities: readonly string[]): void {
    this.issueRequests(this.o.requestPool);
    for (const id of identities) this.prove(id);
  }

  /** The valid proof of a peer workload on this channel, if any. */
  remoteProof(spiffeId: string): RemoteProof | undefined {
    const p = this.remote.get(spiffeId);
    return p && p.expiresAtMs > this.o.clock.now() ? p : undefined;
  }

  /** Whether the peer accepted our proof for the SVID we hold now. */
  localAccepted(spiffeId: string): boolean {
    const l = this.local.get(spiffeId);
    const svid = this.o.identity.svid(spiffeId);
    return !!l && !!svid && l.svid === svid && l.state === 'accepted' && l.expiresAtMs > this.o.clock.now();
  }

  /**
   * Whether a proof exchange is in flight: one of our authenticators is queued or awaits the
   * peer's verdict, or an identity we asked the peer for has neither arrived nor been refused.
   */
  inFlight(): boolean {
    for (const l of this.local.values()) if (l.state === 'queued' || l.state === 'sent') return true;
    for (const id of this.wanted) if (!this.remote.has(id) && !this.unavailable.has(id)) return true;
    return false;
  }

  /** Whether the pair can be authenticated now from this channel's proofs, and with which. */
  pairReady(localId: string, remoteId: string): PairReadiness {
    const now = this.o.clock.now();
    const gone = this.unavailable.get(remoteId);
    if (gone && now - gone.atMs < REFUSAL_HOLD_MS)
      return {
        ok: false,
        final: true,
        reason: gone.reason,
        message: `${this.o.channel.peerNode} does not prove ${remoteId}`,
      };
    if (gone) {
      // Workloads move: ask again.
      this.unavailable.delete(remoteId);
      this.wanted.delete(remoteId);
    }
    const svid = this.o.identity.svid(localId);
    if (!svid)
      return { ok: false, final: true, reason: 'no-local-svid', message: `no SVID held for ${localId}` };
    const l = this.local.get(localId);
    if (l && l.svid === svid && l.state === 'refused' && now - (l.refusedAtMs ?? 0) < REFUSAL_HOLD_MS)
      return {
        ok: false,
        final: true,
        reason: 'peer-rejected',
        message: `${this.o.channel.peerNode} refused our proof of ${localId}: ${l.reason ?? 'unknown'}`,
      };
    const r = this.remoteProof(remoteId);
    if (!r)
      return { ok: false, final: false, reason: 'proof-missing', message: `no proof of ${remoteId} yet` };
    if (!l || l.svid !== svid || l.state !== 'accepted' || !(l.expiresAtMs > now) || !l.anchors)
      return {
        ok: false,
        final: false,
        reason: 'proof-missing',
        message: `proof of ${localId} not accepted yet`,
      };
    return {
      ok: true,
      use: {
        expiresAtMs: Math.min(r.expiresAtMs, l.expiresAtMs),
        trust: { chains: [r.anchors, l.anchors] },
        localProof: { spiffeId: localId, serial: svid.leaf.serialNumber },
        remoteProof: { spiffeId: remoteId, serials: r.serials, proofId: r.proofId },
        localSerial: svid.leaf.serialNumber,
        remoteSerials: r.serials,
        remoteNotAfterMs: r.notAfterMs,
      },
    };
  }

  /** Make sure both proofs of a pair are on their way (ours sent, theirs asked for). */
  request(localId: string, remoteId: string): void {
    this.prove(localId);
    if (!this.remoteProof(remoteId) && !this.wanted.has(remoteId)) {
      this.wanted.add(remoteId);
      this.o.channel.send({ t: 'want', id: remoteId });
    }
  }

  /** Tell the peer to write the reverse entry of a pair we just wrote. Returns the message's seq. */
  sendPair(localId: string, remoteId: string): number {
    const seq = ++this.pairSeq;
    this.o.channel.send({ t: 'pair', seq, from: localId, to: remoteId });
    return seq;
  }

  /**
   * Resolves true when the peer answers pair message `seq` with pair-result ok (it wrote the
   * reverse entry), false when it refuses it or when PAIR_ACK_WAITERS newer waiters pushed this one
   * out. Bounded: at most PAIR_ACK_WAITERS waiters per channel; a channel that closes leaves its
   * waiters unresolved for the caller's own timeout (datapath.synReplay expires them).
   */
  peerWrote(seq: number): Promise<boolean> {
    const known = this.pairAcks.get(seq);
    if (known) return known.promise;
    let resolve!: (ok: boolean) => void;
    const promise = new Promise<boolean>((r) => (resolve = r));
    this.pairAcks.set(seq, { promise, resolve });
    if (this.pairAcks.size > PAIR_ACK_WAITERS) {
      const [oldest, w] = this.pairAcks.entries().next().value as [number, PairAck];
      this.pairAcks.delete(oldest);
      w.resolve(false);
    }
    return promise;
  }

  localSvidChanged(spiffeId: string): void {
    const l = this.local.get(spiffeId);
    if (!l) return;
    const svid = this.o.identity.svid(spiffeId);
    if (!svid) {
      this.local.delete(spiffeId);
      this.o.channel.send({ t: 'drop', id: spiffeId });
    } else if (svid !== l.svid) this.prove(spiffeId);
    this.o.onChange();
  }

  trustBundlesChanged(fps: BundleFingerprints): void {
    for (const [id, p] of this.remote) if (trustLost({ chains: [p.anchors] }, fps)) this.remote.delete(id);
    for (const [id, l] of this.local) {
      if (l.anchors && trustLost({ chains: [l.anchors] }, fps)) {
        this.local.delete(id);
        this.prove(id);
      }
    }
    this.o.onChange();
  }

  handle(m: ChannelMessage): void {
    switch (m.t) {
      case 'req':
        return this.onRequests(m.reqs);
      case 'auth':
        return this.onAuthenticator(m.id, m.a);
      case 'auth-result':
        return this.onAuthResult(m);
      case 'want':
        return this.onWant(m.id);
      case 'drop':
        this.remote.delete(m.id);
        this.wanted.delete(m.id);
        return this.o.onChange();
      case 'pair':
        return this.onPair(m.seq, m.from, m.to);
      case 'pair-result':
        this.pairAcks.get(m.seq)?.resolve(m.ok);
        this.pairAcks.delete(m.seq);
        if (!m.ok)
          this.o.onEvent({
            reason: m.reason ?? 'peer-rejected',
            message: `peer refused pair message ${m.seq}`,
            stage: 'pair',
          });
        return;
      case 'error':
        this.o.onEvent({
          reason: 'peer-rejected',
          message: `peer refused a ${m.ref ?? 'message'}: ${m.reason}`,
          stage: 'message',
        });
        return;
      default:
        // A second hello, or anything else out of place: refused, the channel survives.
        this.o.onEvent({
          reason: 'protocol-error',
          message: `unexpected "${m.t}" message`,
          stage: 'message',
        });
        this.o.channel.send({ t: 'error', reason: 'protocol-error', ref: m.t });
    }
  }

  // --- ours ---

  private prove(spiffeId: string): void {
    const svid = this.o.identity.svid(spiffeId);
    if (!svid) return;
    const l = this.local.get(spiffeId);
    if (l && l.svid === svid && l.state !== 'refused') return;
    this.local.set(spiffeId, { svid, state: 'queued', expiresAtMs: 0 });
    if (!this.queue.includes(spiffeId)) this.queue.push(spiffeId);
    this.flush();
  }

  private flush(): void {
    while (this.queue.length > 0 && this.peerRequests.length > 0) {
      const id = this.queue.shift()!;
      const l = this.local.get(id);
      if (!l || l.state !== 'queued') continue;
      const request = this.peerRequests.shift()!;
      try {
        const bundles = this.o.identity.bundles();
        const anchors = chainAnchors(l.svid.chainDer, bundles, trustDomainOf(id));
        const a = createAuthenticator({
          conn: this.o.channel,
          creator: this.o.channel.role,
          request,
          chainDer: l.svid.chainDer,
          key: l.svid.key,
        });
        this.counters.signed++;
        l.state = 'sent';
        l.anchors = anchors.anchors;
        l.expiresAtMs = Math.min(
          earliestNotAfterMs(l.svid.chainDer),
          anchors.anchorsDer.length > 0 ? earliestNotAfterMs(anchors.anchorsDer) : 0,
        );
        this.o.channel.send({ t: 'auth', id, a: a.toString('base64') });
      } catch (err) {
        l.state = 'refused';
        l.refusedAtMs = this.o.clock.now();
        l.reason = err instanceof AuthenticatorError ? err.reason : 'internal-error';
        this.o.onEvent({
          reason: l.reason,
          message: `create authenticator for ${id}: ${messageOf(err)}`,
          stage: 'proof',
          localId: id,
        });
      }
    }
  }

  private onAuthResult(m: Extract<ChannelMessage, { t: 'auth-result' }>): void {
    if (!m.ok && m.serial === '') {
      // The peer holds no such identity (answer to our "want").
      this.unavailable.set(m.id, {
        reason: m.reason ?? 'remote-identity-unavailable',
        atMs: this.o.clock.now(),
      });
      this.o.onChange();
      return;
    }
    const l = this.local.get(m.id);
    // A verdict on an SVID we no longer hold is stale: the renewed one is on its way.
    if (!l || l.svid.leaf.serialNumber !== m.serial || l.state !== 'sent') return;
    if (m.ok) {
      l.state = 'accepted';
      if (m.expiresAtMs !== undefined) l.expiresAtMs = Math.min(l.expiresAtMs, m.expiresAtMs);
    } else {
      l.state = 'refused';
      l.refusedAtMs = this.o.clock.now();
      l.reason = m.reason ?? 'peer-rejected';
      this.o.onEvent({
        reason: 'peer-rejected',
        message: `peer refused our proof of ${m.id}: ${l.reason}`,
        stage: 'proof',
        localId: m.id,
      });
    }
    this.o.onChange();
  }

  private onWant(id: string): void {
    if (!this.o.identity.svid(id)) {
      this.o.channel.send({
        t: 'auth-result',
        id,
        serial: '',
        ok: false,
        reason: 'remote-identity-unavailable',
      });
      return;
    }
    this.prove(id);
  }

  private onRequests(raws: string[]): void {
    for (const raw of raws) {
      if (this.peerRequests.length >= MAX_PEER_REQUESTS) {
        this.o.onEvent({
          reason: 'protocol-error',
          message: `more than ${MAX_PEER_REQUESTS} unanswered requests`,
          stage: 'message',
        });
        break;
      }
      try {
        this.peerRequests.push(decodeRequest(this.peerRole, Buffer.from(raw, 'base64')));
      } catch (err) {
        this.o.onEvent({
          reason: reasonOf(err),
          message: `authenticator request: ${messageOf(err)}`,
          stage: 'message',
        });
      }
    }
    this.flush();
  }

  // --- theirs ---

  private issueRequests(n: number): void {
    const reqs: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = encodeRequest(this.o.channel.role, randomBytes(REQUEST_CONTEXT_BYTES));
      this.outstanding.set(r.context.toString('hex'), r);
      reqs.push(r.raw.toString('base64'));
    }
    if (reqs.length > 0) this.o.channel.send({ t: 'req', reqs });
  }

  private onAuthenticator(id: string, a: string): void {
    const peerNode = this.o.channel.peerNode;
    const refuse = (reason: string, message: string, serial = '-'): void => {
      this.counters.refused++;
      // Asked for again by the next pair that needs it (the prover re-proves on a want).
      this.wanted.delete(id);
      this.o.channel.send({ t: 'auth-result', id, serial, ok: false, reason });
      this.o.onEvent({ reason, message: `proof of ${id}: ${message}`, stage: 'proof', remoteId: id });
    };
    const raw = Buffer.from(a, 'base64');
    let request: AuthenticatorRequest | undefined;
    try {
      const ctx = authenticatorRequestContext(raw).toString('hex');
      request = this.outstanding.get(ctx);
      if (!request)
        return refuse(
          'proof-unrequested',
          'answers no outstanding request of this channel (replayed or out of order)',
        );
      // Single use, consumed whatever the verdict; replaced so the peer never runs dry.
      this.outstanding.delete(ctx);
      this.issueRequests(1);
      const v = verifyAuthenticator(this.o.channel, this.peerRole, request, raw);
      const serial = v.leaf.serialNumber;
      const now = this.o.clock.now();
      let verified: VerifiedFields;
      try {
        verified = verifyCached(v.chainDer, this.o.identity.bundles(), id, now);
      } catch (err) {
        return refuse(reasonOf(err), messageOf(err), serial);
      }
      if (!this.o.isWorkloadOnNode(id, peerNode))
        return refuse('workload-not-on-node', `the inventory does not place ${id} on ${peerNode}`, serial);
      const anchors = chainAnchors(v.chainDer, this.o.identity.bundles(), trustDomainOf(id));
      if (anchors.anchorsDer.length === 0)
        return refuse('svid-untrusted', 'reaches no authority of its bundle', serial);
      const expiresAtMs = Math.min(verified.earliestNotAfterMs, earliestNotAfterMs(anchors.anchorsDer));
      this.remote.set(id, {
        spiffeId: id,
        serials: verified.serials,
        notAfterMs: verified.notAfterMs,
        expiresAtMs,
        anchors: anchors.anchors,
        proofId: randomBytes(8).toString('hex'),
        acceptedAtMs: now,
      });
      this.unavailable.delete(id);
      this.counters.verified++;
      this.o.channel.send({ t: 'auth-result', id, serial, ok: true, expiresAtMs });
      this.o.onChange();
    } catch (err) {
      refuse(reasonOf(err), messageOf(err));
    }
  }

  private onPair(seq: number, from: string, to: string): void {
    const peerNode = this.o.channel.peerNode;
    this.counters.pairsIn++;
    if (this.ended.signal.aborted || this.o.channel.closed)
      return this.refusePair(seq, from, to, 'channel-closed', `pair ${seq}: channel closed`);
    // A pair our own proofs do not support is refused before it may take a place in the wait.
    const ready = this.pairReady(to, from);
    if (!ready.ok) return this.refusePair(seq, from, to, ready.reason, `pair ${seq}: ${ready.message}`);
    // Then this node's audit queue (audit-pacing.ts); pairs that need not wait are written at once.
    let paced: Promise<void> | undefined;
    try {
      paced = this.o.auditPacer?.admit(
        { path: 'channel', peerNode, localId: to, remoteId: from },
        this.o.pairBudgetMs ?? 5000,
        this.ended.signal,
      );
    } catch (err) {
      return this.refusePair(seq, from, to, reasonOf(err), `pair ${seq}: ${messageOf(err)}`);
    }
    if (!paced) return this.writePair(seq, from, to);
    paced.then(
      () => {
        if (this.o.channel.closed)
          return this.refusePair(
            seq,
            from,
            to,
            'channel-closed',
            `pair ${seq}: channel closed while it waited`,
          );
        this.writePair(seq, from, to);
      },
      (err: unknown) => this.refusePair(seq, from, to, reasonOf(err), `pair ${seq}: ${messageOf(err)}`),
    );
  }

  private refusePair(seq: number, from: string, to: string, reason: string, message: string): void {
    this.counters.pairsRefused++;
    this.o.channel.send({ t: 'pair-result', seq, ok: false, reason });
    this.o.onEvent({ reason, message, stage: 'pair', localId: to, remoteId: from });
  }

  private writePair(seq: number, from: string, to: string): void {
    const peerNode = this.o.channel.peerNode;
    // Never the message alone: our own view of both proofs decides (after any wait: as of now).
    const ready = this.pairReady(to, from);
    if (!ready.ok) return this.refusePair(seq, from, to, ready.reason, `pair ${seq}: ${ready.message}`);
    const expiresAtMs = Math.min(ready.use.expiresAtMs, this.o.clock.now() + this.o.maxEntryTtlMs);
    try {
      this.o.onPairRequested({
        localId: to,
        remoteId: from,
        peerNode,
        expiresAtMs,
        trust: ready.use.trust,
        localSerial: ready.use.localSerial,
        peerSerials: ready.use.remoteSerials,
        tlsVersion: this.o.channel.tlsVersion,
        cipher: this.o.channel.cipher,
        durationMs: 0,
        channel: {
          id: this.o.channel.id,
          peerNode,
          pairSeq: seq,
          localProof: ready.use.localProof,
          remoteProof: ready.use.remoteProof,
        },
      });
    } catch (err) {
      const reason = (err as { reason?: unknown }).reason;
      return this.refusePair(
        seq,
        from,
        to,
        typeof reason === 'string' ? reason : 'entry-write-failed',
        messageOf(err),
      );
    }
    // The initiator wrote its entry already; the acknowledgement tells it that ours exists too, so
    // that it may send the pair's dropped SYN again (datapath.synReplay). Peers that predate it
    // ignore an ok pair-result.
    this.o.channel.send({ t: 'pair-result', seq, ok: true, expiresAtMs });
  }
}

function reasonOf(err: unknown): string {
  if (err instanceof AuthenticatorError || err instanceof HandshakeError) return err.reason;
  return 'internal-error';
}
