import { channel } from 'node:diagnostics_channel';

/** Published for every connection the server rejected or failed: a HandshakeFailureEvent. */
export const SERVER_FAILURE_CHANNEL = 'meshauth:handshake:server:failure';
/** Published for every client the server authenticated: a ServerAuthResult. */
export const SERVER_SUCCESS_CHANNEL = 'meshauth:handshake:server:success';
/** Published for every client-side handshake outcome: { ok, reason?, localId, remoteId, peerNode, durationMs }. */
export const CLIENT_OUTCOME_CHANNEL = 'meshauth:handshake:client:outcome';

export const serverFailureChannel = channel(SERVER_FAILURE_CHANNEL);
export const serverSuccessChannel = channel(SERVER_SUCCESS_CHANNEL);
export const clientOutcomeChannel = channel(CLIENT_OUTCOME_CHANNEL);

export interface HandshakeServerStats {
  /** TCP connections accepted by the listener (including ones refused at once). */
  accepted: number;
  /** Connections currently open. */
  active: number;
  /** Clients authenticated (entry written, ok result sent). */
  succeeded: number;
  /** Failed or refused connections by reason code. */
  failed: Record<string, number>;
}

export class ServerCounters {
  accepted = 0;
  active = 0;
  succeeded = 0;
  private readonly failed = new Map<string, number>();

  fail(reason: string): void {
    this.failed.set(reason, (this.failed.get(reason) ?? 0) + 1);
  }

  snapshot(): HandshakeServerStats {
    return {
      accepted: this.accepted,
      active: this.active,
      succeeded: this.succeeded,
      failed: Object.fromEntries(this.failed),
    };
  }
}
