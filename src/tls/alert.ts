import type { Socket } from 'node:net';

/** TLS alert descriptions meshauth sends or interprets (RFC 8446 §6). */
export const TLS_ALERT = {
  handshakeFailure: 40,
  protocolVersion: 70,
  internalError: 80,
  noApplicationProtocol: 120,
  unrecognizedName: 112,
} as const;

/**
 * Write a fatal alert as a plaintext TLS record on the raw TCP socket. Valid only before the server
 * sent its ServerHello (nothing is encrypted yet), e.g. from the SNI callback: node:tls itself can
 * only abort there by closing the connection, which tells the client nothing.
 */
export function sendPlaintextAlert(raw: Socket, description: number): void {
  if (raw.destroyed || !raw.writable) return;
  // ContentType alert(21), legacy_record_version 0x0303, length 2, level fatal(2), description.
  raw.write(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description & 0xff]));
}

/** The alert number an OpenSSL error reports having received ("SSL alert number N"), if any. */
export function tlsAlertOf(err: unknown): number | undefined {
  const message = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  const m = /SSL alert number (\d{1,3})\b/.exec(message);
  return m ? Number(m[1]) : undefined;
}
