import { MeshauthError } from '../errors.js';

/** A CLI failure with the exit status to use (1 = failed, 2 = usage). */
export class CliError extends MeshauthError {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super('MESHAUTH_ERR_CLI', message);
  }
}
