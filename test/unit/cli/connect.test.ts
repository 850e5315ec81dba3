import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { socketPathOf, timeoutMsOf } from '../../../src/cli/connect.js';
import type { CliIo } from '../../../src/cli/io.js';

const io = (env: Record<string, string> = {}): CliIo => ({ env }) as unknown as CliIo;

describe('global connection options', () => {
  it('makes a relative --socket or MESHAUTH_SOCKET absolute (gRPC would read it as an authority)', () => {
    expect(socketPathOf({ socket: 'api.sock' }, io())).toBe(resolve('api.sock'));
    expect(socketPathOf({}, io({ MESHAUTH_SOCKET: 'run/x.sock' }))).toBe(resolve('run/x.sock'));
    expect(socketPathOf({ socket: '/run/meshauth/api.sock' }, io())).toBe('/run/meshauth/api.sock');
    expect(socketPathOf({}, io())).toBe('/run/meshauth/api.sock');
  });

  it('reads --timeout as seconds and refuses anything that is not a positive number up to an hour', () => {
    expect(timeoutMsOf({})).toBe(10_000);
    expect(timeoutMsOf({ timeout: '2.5' })).toBe(2_500);
    expect(timeoutMsOf({ timeout: '3600' })).toBe(3_600_000);
    for (const bad of ['abc', '', '0', '-5', '1e3', '0x10', 'NaN', 'Infinity', '3601']) {
      expect(() => timeoutMsOf({ timeout: bad }), bad).toThrow(
        expect.objectContaining({ exitCode: 2, message: expect.stringContaining('--timeout') }),
      );
    }
  });
});
