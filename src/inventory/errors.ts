import { ConfigError } from '../config/index.js';

/** The inventory document is invalid (code MESHAUTH_ERR_INVENTORY); lines "inventory <file>: <path>: <reason>". */
export class InventoryError extends ConfigError {
  constructor(problems: readonly string[], options?: { cause?: unknown }) {
    super(problems, { ...options, code: 'MESHAUTH_ERR_INVENTORY' });
  }
}
