import { z } from 'zod';
import { protocolError, REASON_CODE_RE } from './errors.js';

/**
 * Version of the messages exchanged inside TLS. 2: WireGuard possession proofs (`wgProof`,
 * wireguard-proof.ts) in hello and result; version 1 peers are refused (protocol-error).
 */
export const PROTOCOL_VERSION = 2;

/** Longest SPIFFE ID accepted in a message (the SPIFFE spec's URI limit). */
export const MAX_SPIFFE_ID_LENGTH = 2048;

/** Node names are DNS subdomains (Kubernetes): 1..253 characters. */
const NODE_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

/** A WireGuard public key: base64 of 32 bytes (44 characters, one '=' of padding). */
const WG_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

// Printable ASCII only; the SPIFFE module does the full parse where it matters (certificates).
const SPIFFE_ID_RE = /^spiffe:\/\/[\x21-\x7e]+$/;

const nodeName = z.string().max(253).regex(NODE_NAME_RE, 'not a node name');
const spiffeId = z.string().max(MAX_SPIFFE_ID_LENGTH).regex(SPIFFE_ID_RE, 'not a SPIFFE ID');
const wgPublicKey = z.string().regex(WG_KEY_RE, 'not a WireGuard public key');
/** An HMAC-SHA256 output: base64 of 32 bytes, the same shape as a key. */
const wgProof = z.string().regex(WG_KEY_RE, 'not a WireGuard binding proof (base64 of 32 bytes)');
const reasonCode = z.string().max(64).regex(REASON_CODE_RE, 'not a reason code');
const expiresAtMs = z.number().int().min(0).max(8.64e15);

const helloSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  clientNode: nodeName,
  serverNode: nodeName,
  clientId: spiffeId,
  serverId: spiffeId,
  /** The client node's WireGuard public key (diagnostics: the proof is what binds). */
  wgPublicKey: wgPublicKey.optional(),
  /** Proof of possession of the client node's WireGuard private key (role "client"). */
  wgProof: wgProof.optional(),
});

const resultSchema = z
  .strictObject({
    v: z.literal(PROTOCOL_VERSION),
    ok: z.boolean(),
    reason: reasonCode.optional(),
    expiresAtMs,
    wgPublicKey: wgPublicKey.optional(),
    /** Proof of possession of the server node's WireGuard private key (role "server"). */
    wgProof: wgProof.optional(),
  })
  .refine(
    (r) =>
      r.ok ? r.reason === undefined && r.expiresAtMs > 0 : r.reason !== undefined && r.expiresAtMs === 0,
    {
      message: 'ok=true needs expiresAtMs > 0 and no reason; ok=false needs a reason and expiresAtMs = 0',
    },
  );

/** Client → server, the first and only frame the client sends. */
export type HelloMessage = z.infer<typeof helloSchema>;

/** Server → client, the only frame the server sends. */
export type ResultMessage = z.infer<typeof resultSchema>;

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const path = issue.path.length > 0 ? issue.path.join('.') : '(message)';
  return `${path}: ${issue.message}`;
}

/** Validate a decoded frame as a hello; anything else throws `protocol-error`. */
export function parseHello(value: unknown): HelloMessage {
  const r = helloSchema.safeParse(value);
  if (!r.success) throw protocolError(`parse hello: ${describe(r.error)}`);
  return r.data;
}

/** Validate a decoded frame as a result; anything else throws `protocol-error`. */
export function parseResult(value: unknown): ResultMessage {
  const r = resultSchema.safeParse(value);
  if (!r.success) throw protocolError(`parse result: ${describe(r.error)}`);
  return r.data;
}

export function helloMessage(fields: Omit<HelloMessage, 'v'>): HelloMessage {
  return { v: PROTOCOL_VERSION, ...dropUndefined(fields) };
}

export function okResult(
  expiresAtMs: number,
  wgPublicKey: string | undefined,
  wgProof?: string | undefined,
): ResultMessage {
  return { v: PROTOCOL_VERSION, ok: true, expiresAtMs, ...dropUndefined({ wgPublicKey, wgProof }) };
}

/**
 * A refusal. `reason` is any reason code (REASON_CODE_RE): a client reports the server's reason
 * as `peer-rejected` with details.peerReason, except `audit-busy` (the server's audit queue is
 * behind, audit-pacing.ts), which it reports under that reason; both are retried with backoff.
 * Adding a reason changes no schema: an older client fails closed on it as on any refusal.
 * `wgPublicKey` (the server node's key) lets the client tell a server whose key is not
 * the inventory's (wireguard-key-mismatch) from any other refusal.
 */
export function failedResult(reason: string, wgPublicKey?: string | undefined): ResultMessage {
  return { v: PROTOCOL_VERSION, ok: false, reason, expiresAtMs: 0, ...dropUndefined({ wgPublicKey }) };
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
