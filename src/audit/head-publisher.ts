import type { Logger } from '../log.js';
import { systemClock, type Clock, type Timer } from '../time.js';
import { parseCertificates } from '../spiffe/index.js';
import { originOf, signHead, type HeadSigningSvid } from './signed-head.js';
import type { AuditStore } from './store.js';
import type { SignedHeadEnvelope } from './witness.js';

/** One witness as the publisher sees it: where it is and how to hand it a head. */
export interface HeadSubmission {
  /** For logs and results ("10.0.0.2:4251", "relay"). */
  target: string;
  submit(env: SignedHeadEnvelope): Promise<{ accepted: boolean; reason?: string; message?: string }>;
}

export interface HeadPublisherOptions {
  store: AuditStore;
  /** This node's SPIFFE ID: the checkpoint origin and the SVID that signs. */
  spiffeId: string;
  /** This node's name (meshauth-node extension line). */
  node: string;
  /** The current SVID of spiffeId (re-read on every signature: rotation needs no restart). */
  svid: () => HeadSigningSvid | undefined;
  witnesses: readonly HeadSubmission[];
  /** How often the head is signed and handed out. Default 60 s. */
  intervalMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export interface PublishResult {
  seq: number;
  results: { target: string; accepted: boolean; reason?: string; message?: string }[];
}

/**
 * Signs this node's audit head (src/audit/signed-head.ts) every intervalMs and on demand, and hands
 * it to every witness at once; a witness that fails or refuses is logged and retried with the next
 * head. An unchanged head is signed again (with a new time): witnesses take it as a duplicate.
 */
export class HeadPublisher {
  private timer: Timer | undefined;
  private closed = false;
  private readonly clock: Clock;

  constructor(private readonly opts: HeadPublisherOptions) {
    this.clock = opts.clock ?? systemClock;
    originOf(opts.spiffeId);
  }

  start(): void {
    if (this.timer || this.closed) return;
    this.timer = this.clock.setInterval(() => void this.publish(), this.opts.intervalMs ?? 60_000);
  }

  /** The current head, signed now; undefined when the SVID is not available. */
  signNow(): SignedHeadEnvelope | undefined {
    const svid = this.opts.svid();
    if (!svid) return undefined;
    const h = this.opts.store.head();
    const note = signHead(
      {
        origin: originOf(this.opts.spiffeId),
        treeSize: h.seq,
        hash: h.hash,
        atMs: this.clock.now(),
        node: this.opts.node,
      },
      svid,
    );
    return { note, certChain: parseCertificates(svid.chainPem) };
  }

  /** Sign the head and submit it to every witness. */
  async publish(): Promise<PublishResult | undefined> {
    if (this.closed) return undefined;
    let env: SignedHeadEnvelope | undefined;
    try {
      env = this.signNow();
    } catch (err) {
      this.opts.logger?.error({ event: 'audit_head_sign_failed', err }, 'could not sign the audit head');
      return undefined;
    }
    if (!env) {
      this.opts.logger?.warn(
        { event: 'audit_head_no_svid', local_id: this.opts.spiffeId },
        'no SVID to sign the audit head with',
      );
      return undefined;
    }
    const seq = Number(env.note.split('\n')[1]);
    const results = await Promise.all(
      this.opts.witnesses.map(async (w) => {
        try {
          const r = await w.submit(env);
          if (!r.accepted)
            this.opts.logger?.warn(
              {
                event: 'audit_head_refused',
                witness: w.target,
                seq,
                reason: r.reason,
                err: { message: r.message },
              },
              'a witness refused the audit head',
            );
          return { target: w.target, ...r };
        } catch (err) {
          this.opts.logger?.warn(
            { event: 'audit_head_submit_failed', witness: w.target, seq, err },
            'could not reach a witness',
          );
          return {
            target: w.target,
            accepted: false,
            reason: 'unreachable',
            message: (err as Error).message,
          };
        }
      }),
    );
    return { seq, results };
  }

  /** Idempotent. */
  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
  }
}
