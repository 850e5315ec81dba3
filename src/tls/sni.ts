import { createHash } from 'node:crypto';

/** Reserved suffix under which meshauth server names live (`.invalid` never resolves, RFC 6761). */
export const MESHAUTH_SNI_SUFFIX = '.id.meshauth.invalid';

/** Number of bytes of sha256(SPIFFE ID) carried in the server name (32 hex characters). */
export const SNI_HASH_BYTES = 16;

const SNI_RE = /^[0-9a-f]{32}\.id\.meshauth\.invalid$/;

/** The hex label for a SPIFFE ID: the first 16 bytes of sha256(id), lower-case hex. */
export function sniHashOf(spiffeId: string): string {
  return createHash('sha256').update(spiffeId, 'utf8').digest().subarray(0, SNI_HASH_BYTES).toString('hex');
}

/**
 * The TLS server name a client sends to ask for `spiffeId`:
 * `<hex of the first 16 bytes of sha256(id)>.id.meshauth.invalid`. Fixed length, so any SPIFFE ID fits.
 */
export function sniForSpiffeId(spiffeId: string): string {
  return `${sniHashOf(spiffeId)}${MESHAUTH_SNI_SUFFIX}`;
}

/** Whether a server name has the meshauth form (case-insensitive, as DNS names are). */
export function isMeshauthSni(serverName: string): boolean {
  return SNI_RE.test(serverName.toLowerCase());
}

/** The hash label of a meshauth server name, or undefined when it is not one. */
export function sniHashFromServerName(serverName: string): string | undefined {
  const lower = serverName.toLowerCase();
  return SNI_RE.test(lower) ? lower.slice(0, SNI_HASH_BYTES * 2) : undefined;
}
