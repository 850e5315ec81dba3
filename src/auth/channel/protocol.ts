import { z } from 'zod';
import { protocolError, REASON_CODE_RE } from '../handshake/index.js';
import { MAX_SPIFFE_ID_LENGTH } from '../handshake/index.js';

/**
 * Version of the node channel's messages. Every frame carries it (`v`); a peer speaking another
 * version is refused with protocol-error and the channel closed.
 *
 * Frames are the handshake's codec (frame.ts: u32 big-endian length, UTF-8 JSON body, 16 KiB at
 * most); binary fields (TLS wire structs, WireGuard proofs) are base64.
 */
export const CHANNEL_PROTOCOL_VERSION = 1;

/** ALPN protocol id of the node channel (distinct from the per-pair handshake's). */
export const CHANNEL_ALPN = 'meshauth-channel/1';

const NODE_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;
const SPIFFE_ID_RE = /^spiffe:\/\/[\x21-\x7e]+$/;
const WG_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

const nodeName = z.string().max(253).regex(NODE_NAME_RE, 'not a node name');
const spiffeId = z.string().max(MAX_SPIFFE_ID_LENGTH).regex(SPIFFE_ID_RE, 'not a SPIFFE ID');
const wgKey = z.string().regex(WG_KEY_RE, 'not a WireGuard public key');
const b64 = (max: number) => z.string().max(max).regex(B64_RE, 'not base64');
const reason = z.string().max(64).regex(REASON_CODE_RE, 'not a reason code');
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const v = z.literal(CHANNEL_PROTOCOL_VERSION);

/** Most authenticator requests one frame may carry. */
export const MAX_REQUESTS_PER_FRAME = 64;

const messageSchema = z.discriminatedUnion('t', [
  /** First frame each way: who we are, and proof of our WireGuard key bound to this connection. */
  z.strictObject({
    v,
    t: z.literal('hello'),
    node: nodeName,
    peerNode: nodeName,
    wgPublicKey: wgKey.optional(),
    wgProof: wgKey.optional(),
  }),
  /** Authenticator requests (RFC 9261 §4) the sender will accept authenticators for, one each. */
  z.strictObject({ v, t: z.literal('req'), reqs: z.array(b64(1024)).min(1).max(MAX_REQUESTS_PER_FRAME) }),
  /** An exported authenticator (RFC 9261 §5) for one of the sender's workload identities. */
  z.strictObject({ v, t: z.literal('auth'), id: spiffeId, a: b64(15 * 1024) }),
  /** The verdict on an authenticator: accepted (with the proof's expiry) or refused with a reason. */
  z.strictObject({
    v,
    t: z.literal('auth-result'),
    id: spiffeId,
    serial: z.string().max(128),
    ok: z.boolean(),
    reason: reason.optional(),
    expiresAtMs: seq.optional(),
  }),
  /** Ask the peer to prove `id` (it holds it per our inventory). */
  z.strictObject({ v, t: z.literal('want'), id: spiffeId }),
  /** The sender no longer holds `id`: forget its proof. */
  z.strictObject({ v, t: z.literal('drop'), id: spiffeId }),
  /**
   * The sender wrote the entry (from = its workload, to = ours): write the reverse one, then answer
   * with pair-result (ok once written, so the sender knows both entries exist; or the refusal).
   */
  z.strictObject({ v, t: z.literal('pair'), seq, from: spiffeId, to: spiffeId }),
  /**
   * The answer to `pair`: ok once the reverse entry is written, or the refusal's reason (a proof or
   * write-check reason; `audit-busy` when the responder's audit queue did not drain in time,
   * audit-pacing.ts). Nothing is written on a refusal; older peers treat every reason alike.
   */
  z.strictObject({
    v,
    t: z.literal('pair-result'),
    seq,
    ok: z.boolean(),
    reason: reason.optional(),
    expiresAtMs: seq.optional(),
  }),
  z.strictObject({ v, t: z.literal('ping'), seq }),
  z.strictObject({ v, t: z.literal('pong'), seq }),
  /**
   * The sender closes the channel on purpose (reason: idle, evicted): the receiver closes too and
   * does not re-dial; its next pair opens a channel again.
   */
  z.strictObject({ v, t: z.literal('bye'), reason }),
  /** A frame the sender refused (the channel stays up): reason code and the refused frame's type. */
  z.strictObject({ v, t: z.literal('error'), reason, ref: z.string().max(32).optional() }),
]);

export type ChannelMessage = z.infer<typeof messageSchema>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type ChannelMessageBody = DistributiveOmit<ChannelMessage, 'v'>;

/** Validate a decoded frame; anything else throws `protocol-error`. */
export function parseChannelMessage(value: unknown): ChannelMessage {
  if (typeof value === 'object' && value !== null && 'v' in value && value.v !== CHANNEL_PROTOCOL_VERSION) {
    throw protocolError(
      `channel message: version ${String(value.v)}, this node speaks ${CHANNEL_PROTOCOL_VERSION}`,
    );
  }
  const r = messageSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue && issue.path.length > 0 ? issue.path.join('.') : '(message)';
    throw protocolError(`channel message: ${path}: ${issue?.message ?? 'invalid'}`);
  }
  return r.data;
}

export function message(body: ChannelMessageBody): ChannelMessage {
  const out = { v: CHANNEL_PROTOCOL_VERSION, ...body } as Record<string, unknown>;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out as ChannelMessage;
}
