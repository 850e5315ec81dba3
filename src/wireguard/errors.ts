import { MeshauthError } from '../errors.js';

/** Stable codes of WireGuard failures. */
export type WireguardErrorCode =
  | 'MESHAUTH_ERR_WIREGUARD_COMMAND'
  | 'MESHAUTH_ERR_WIREGUARD_CONFIG'
  | 'MESHAUTH_ERR_WIREGUARD_KEY_INVALID'
  | 'MESHAUTH_ERR_WIREGUARD_KEY_FILE_MODE'
  | 'MESHAUTH_ERR_WIREGUARD_PEER_INVALID'
  | 'MESHAUTH_ERR_WIREGUARD_DUMP_PARSE'
  | 'MESHAUTH_ERR_WIREGUARD_INTERFACE_CONFLICT'
  | 'MESHAUTH_ERR_WIREGUARD_INTERFACE_GONE'
  | 'MESHAUTH_ERR_WIREGUARD_USERSPACE_START';

/**
 * Any WireGuard failure. When an external command failed, `command` holds its argument vector
 * (never key material: keys are passed through files) and `output` what it printed.
 */
export class WireguardError extends MeshauthError {
  declare readonly code: WireguardErrorCode;
  readonly command: readonly string[] | undefined;
  readonly output: string | undefined;
  readonly exitCode: number | null | undefined;

  constructor(
    code: WireguardErrorCode,
    message: string,
    details: { command?: readonly string[]; output?: string; exitCode?: number | null; cause?: unknown } = {},
  ) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.command = details.command;
    this.output = details.output;
    this.exitCode = details.exitCode;
  }
}
