import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { errorForLog, fileErrorReason, grpcDetailsReason, MeshauthError } from '../../src/errors.js';

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

describe('fileErrorReason', () => {
  const thrownBy = (fn: () => unknown): unknown => {
    try {
      fn();
    } catch (err) {
      return err;
    }
    throw new Error('did not throw');
  };

  it('gives the reason a file cannot be read without repeating its path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-file-reason-'));
    try {
      const loop = join(dir, 'loop');
      symlinkSync(loop, loop);
      const cases: [unknown, string][] = [
        [thrownBy(() => readFileSync(join(dir, 'missing.key'))), 'no such file'],
        [thrownBy(() => readFileSync(dir)), 'is a directory, not a file'],
        [thrownBy(() => readFileSync(loop)), 'too many symbolic links encountered'],
        // root reads any file, so permission denied is built as Node reports it
        [
          Object.assign(new Error(`EACCES: permission denied, open '${dir}/tls.key'`), { code: 'EACCES' }),
          'permission denied',
        ],
      ];
      for (const [err, reason] of cases) {
        expect(fileErrorReason(err)).toBe(reason);
        expect(fileErrorReason(err)).not.toContain(dir);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps any other error as it is', () => {
    expect(fileErrorReason(new Error('not a PEM file'))).toBe('not a PEM file');
    expect(fileErrorReason('text')).toBe('text');
  });
});

describe('grpcDetailsReason', () => {
  it('keeps the last connect error of a channel that never connected, in words, without an empty note', () => {
    expect(
      grpcDetailsReason(
        'No connection established. Last error: Error: connect ENOENT /run/meshauth/api.sock. Resolution note: ',
      ),
    ).toBe('no such socket (connect ENOENT)');
    expect(
      grpcDetailsReason(
        'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ',
      ),
    ).toBe('connection refused (connect ECONNREFUSED)');
    expect(
      grpcDetailsReason(
        'No connection established. Last error: Error: connect EACCES /run/meshauth/api.sock. Resolution note: ',
      ),
    ).toBe('permission denied (connect EACCES)');
  });

  it('keeps a resolution note that has text, and an errno it has no words for as it is', () => {
    expect(
      grpcDetailsReason(
        'No connection established. Last error: Error: connect EWHATEVER 10.0.0.1:9. Resolution note: DNS said no',
      ),
    ).toBe('connect EWHATEVER 10.0.0.1:9; DNS said no');
    expect(
      grpcDetailsReason(
        'No connection established. Last error: Error: self-signed certificate in chain. Resolution note: ',
      ),
    ).toBe('self-signed certificate in chain');
    expect(grpcDetailsReason('No addresses resolved. Resolution note: ')).toBe('no addresses resolved');
    expect(grpcDetailsReason('No addresses resolved. Resolution note: bad name')).toBe(
      'no addresses resolved: bad name',
    );
  });

  it('says a deadline in words and leaves other details alone', () => {
    expect(grpcDetailsReason('Deadline exceeded after 1.002s,Waiting for LB pick')).toBe(
      'no answer within 1 s (deadline exceeded)',
    );
    // grpc-js's own timer fired 2 ms early: the deadline asked for, not 0.498
    expect(grpcDetailsReason('Deadline exceeded after 0.498s,Waiting for LB pick')).toBe(
      'no answer within 0.5 s (deadline exceeded)',
    );
    expect(grpcDetailsReason('Name resolution failed for target dns:nohost.invalid:50')).toBe(
      'Name resolution failed for target dns:nohost.invalid:50',
    );
    expect(grpcDetailsReason('GetStatus: store closed')).toBe('GetStatus: store closed');
    expect(grpcDetailsReason('')).toBe('');
  });
});
