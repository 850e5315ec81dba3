import { MeshauthError } from '../errors.js';

/**
 * A configuration document (daemon config, inventory, policy) is invalid.
 * `problems` holds one line per problem, each "<source>: <path>: <reason>", or for settings that do
 * not go together "<label>: conflict between <path> (<origin>) and <path> (<origin>): <reason>"
 * (yaml-document.ts validateDocument); the message is the
 * same lines joined by newlines (the first line alone when there is one problem).
 */
export class ConfigError extends MeshauthError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[], options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'MESHAUTH_ERR_CONFIG', problems.join('\n'), options);
    this.problems = problems;
  }
}
