import { ConfigError } from '../config/index.js';

/** The policy document is invalid (code MESHAUTH_ERR_POLICY); lines "policy <file>: <path>: <reason>". */
export class PolicyError extends ConfigError {
  constructor(problems: readonly string[], options?: { cause?: unknown; code?: string }) {
    super(problems, { ...options, code: options?.code ?? 'MESHAUTH_ERR_POLICY' });
  }
}
