import * as grpc from '@grpc/grpc-js';
import type { SignedHeadEnvelope, SubmitResult, WitnessedHeadRecord } from '../audit/index.js';
import type { Logger } from '../log.js';
import type { SignedHeadMsg } from './messages.js';
import { peerSpiffeIdOf } from './tcp-auth.js';

/** What the Witness service needs: the witness (src/audit Witness) and this node's own head signer. */
export interface WitnessView {
  submit(env: SignedHeadEnvelope, submitter: string | undefined): SubmitResult;
  list(spiffeId: string, limit: number): WitnessedHeadRecord[];
  /** This node's head signed now; undefined when it cannot sign (no SVID). */
  signNow?(): SignedHeadEnvelope | undefined;
  /** Sign and hand the head to the configured witnesses. */
  publish?(): Promise<unknown>;
}

/** Longest certificate chain accepted with a head (leaf + intermediates). */
const MAX_CHAIN = 8;
const MAX_CERT_BYTES = 16_384;

function envelopeOf(h: Partial<SignedHeadMsg> | null | undefined): SignedHeadEnvelope | string {
  if (!h || typeof h.note !== 'string' || h.note === '') return 'head.note is empty';
  const chain = h.certChain ?? [];
  if (chain.length === 0 || chain.length > MAX_CHAIN)
    return `head.cert_chain must hold 1..${MAX_CHAIN} certificates`;
  if (chain.some((c) => !Buffer.isBuffer(c) || c.length === 0 || c.length > MAX_CERT_BYTES))
    return `head.cert_chain holds an empty or oversized (> ${MAX_CERT_BYTES} bytes) certificate`;
  return { note: h.note, certChain: chain.map((c) => Buffer.from(c)) };
}

function toMsg(env: SignedHeadEnvelope): SignedHeadMsg {
  return { note: env.note, certChain: [...env.certChain] };
}

/**
 * meshauth.v1.Witness handlers. SubmitHead takes the submitter from the TCP listener's mTLS
 * authentication (peerSpiffeIdOf); on the Unix socket there is none and the head is refused.
 */
export function witnessServiceHandlers(
  view: WitnessView,
  logger?: Logger,
): grpc.UntypedServiceImplementation {
  return {
    SubmitHead: (
      call: grpc.ServerUnaryCall<{ head?: SignedHeadMsg | null }, unknown>,
      cb: grpc.sendUnaryData<unknown>,
    ) => {
      const env = envelopeOf(call.request.head);
      if (typeof env === 'string') {
        cb({ code: grpc.status.INVALID_ARGUMENT, details: `SubmitHead: ${env}` });
        return;
      }
      const submitter = peerSpiffeIdOf(call);
      let r: SubmitResult;
      try {
        r = view.submit(env, submitter);
      } catch (err) {
        cb({ code: grpc.status.INTERNAL, details: `SubmitHead: ${(err as Error).message}` });
        return;
      }
      if (r.accepted) {
        cb(null, { accepted: true, duplicate: r.duplicate, reason: '', message: '' });
      } else {
        // past the submitter's refusal-row limit the log is as quiet as the trail (debug)
        logger?.[r.summarised ? 'debug' : 'warn'](
          {
            event: 'witness_head_refused',
            remote_id: submitter,
            reason: r.reason,
            err: { message: r.message },
          },
          'signed audit head refused',
        );
        cb(null, { accepted: false, duplicate: false, reason: r.reason, message: r.message });
      }
    },

    ListWitnessedHeads: (call: grpc.ServerWritableStream<{ spiffeId?: string; limit?: number }, unknown>) => {
      const id = call.request.spiffeId ?? '';
      const limit = call.request.limit || 10_000;
      if (!id.startsWith('spiffe://') || limit > 10_000) {
        call.emit('error', {
          code: grpc.status.INVALID_ARGUMENT,
          details: 'ListWitnessedHeads: spiffe_id must be a SPIFFE ID and limit at most 10000',
        });
        return;
      }
      let heads: WitnessedHeadRecord[];
      try {
        heads = view.list(id, limit);
      } catch (err) {
        call.emit('error', {
          code: grpc.status.INTERNAL,
          details: `ListWitnessedHeads: ${(err as Error).message}`,
        });
        return;
      }
      for (const h of heads) {
        call.write({ head: toMsg(h), witnessedAtMs: h.witnessedAtMs, witnessSeq: h.witnessSeq });
      }
      call.end();
    },

    SignHead: (
      call: grpc.ServerUnaryCall<{ publish?: boolean }, unknown>,
      cb: grpc.sendUnaryData<unknown>,
    ) => {
      try {
        const env = view.signNow?.();
        if (!env) {
          cb({
            code: grpc.status.FAILED_PRECONDITION,
            details: 'SignHead: this node has no SVID to sign its audit head with',
          });
          return;
        }
        if (call.request.publish && view.publish) void view.publish();
        cb(null, toMsg(env));
      } catch (err) {
        cb({ code: grpc.status.INTERNAL, details: `SignHead: ${(err as Error).message}` });
      }
    },
  };
}
