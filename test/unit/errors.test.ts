import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { errorForLog, MeshauthError } from '../../src/errors.js';

/** What pino writes for `{ err }`. */
function logged(err: unknown): Record<string, unknown> {
  const lines: string[] = [];
  const log = pino({ base: null, timestamp: false }, { write: (l: string) => void lines.push(l) });
  log.error({ err }, 'failed');
  return (JSON.parse(lines[0]!) as { err: Record<string, unknown> }).err;
}

class InventoryError extends MeshauthError {
  constructor(message: string, cause: unknown) {
    super('MESHAUTH_ERR_INVENTORY', message, { cause });
  }
}

describe('errorForLog', () => {
  it('logs a typed error with its class, code, message and causes, without a stack trace', () => {
    const root = new Error('ENOENT: no such file');
    const mid = new MeshauthError('MESHAUTH_ERR_X_READ', 'read inventory: failed', { cause: root });
    const err = new InventoryError('load inventory: failed', mid);
    const out = logged(errorForLog(err));
    expect(out).toMatchObject({
      type: 'InventoryError',
      code: 'MESHAUTH_ERR_INVENTORY',
      causes: ['read inventory: failed', 'ENOENT: no such file'],
    });
    expect(out['message']).toMatch(/^load inventory: failed/);
    expect(out['stack']).toBe('InventoryError: load inventory: failed');
    expect(JSON.stringify(out)).not.toMatch(/\n\s+at /);
    // The original is untouched.
    expect(err.stack).toMatch(/\n\s+at /);
  });

  it('leaves an unexpected error whole, so its stack trace is logged', () => {
    const bug = new TypeError("cannot read properties of undefined (reading 'x')");
    expect(errorForLog(bug)).toBe(bug);
    expect(logged(errorForLog(bug))['stack']).toMatch(/\n\s+at /);
    expect(errorForLog('text')).toBe('text');
  });
});
