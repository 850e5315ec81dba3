import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliDurationMs, connect, hostPortOf, socketPathOf, timeoutMsOf } from '../../../src/cli/connect.js';
import { DevCa } from '../../../src/identity/index.js';
import type { CliIo } from '../../../src/cli/io.js';

const io = (env: Record<string, string> = {}): CliIo => ({ env }) as unknown as CliIo;

describe('global connection options', () => {
  it('makes a relative --socket or MESHAUTH_SOCKET absolute (gRPC would read it as an authority)', () => {
    expect(socketPathOf({ socket: 'api.sock' }, io())).toBe(resolve('api.sock'));
    expect(socketPathOf({}, io({ MESHAUTH_SOCKET: 'run/x.sock' }))).toBe(resolve('run/x.sock'));
    expect(socketPathOf({ socket: '/run/meshauth/api.sock' }, io())).toBe('/run/meshauth/api.sock');
    expect(socketPathOf({}, io())).toBe('/run/meshauth/api.sock');
    // regression: an empty MESHAUTH_SOCKET or --socket resolved to the working directory
    expect(socketPathOf({}, io({ MESHAUTH_SOCKET: '' }))).toBe('/run/meshauth/api.sock');
    expect(() => socketPathOf({ socket: '' }, io())).toThrow('--socket: must be a path (got "")');
  });

  it('reads --timeout as a duration or bare seconds and refuses anything not above 0 and up to an hour', () => {
    expect(timeoutMsOf({})).toBe(10_000);
    expect(timeoutMsOf({ timeout: '2.5' })).toBe(2_500);
    expect(timeoutMsOf({ timeout: '3600' })).toBe(3_600_000);
    expect(timeoutMsOf({ timeout: '5s' })).toBe(5_000);
    expect(timeoutMsOf({ timeout: '500ms' })).toBe(500);
    expect(timeoutMsOf({ timeout: '2m' })).toBe(120_000);
    expect(timeoutMsOf({ timeout: '1h' })).toBe(3_600_000);
    for (const bad of ['abc', '', '0', '0s', '-5', '1e3', '0x10', 'NaN', 'Infinity', '3601', '61m', '5x']) {
      expect(() => timeoutMsOf({ timeout: bad }), bad).toThrow(
        expect.objectContaining({ exitCode: 2, message: expect.stringContaining('--timeout') }),
      );
    }
  });

  it('reads audit verify --max-skew as a duration or bare seconds up to a day', () => {
    expect(cliDurationMs('--max-skew', '300', 86_400_000)).toBe(300_000);
    expect(cliDurationMs('--max-skew', '5m', 86_400_000)).toBe(300_000);
    expect(cliDurationMs('--max-skew', '1d', 86_400_000)).toBe(86_400_000);
    expect(() => cliDurationMs('--max-skew', '25h', 86_400_000)).toThrow(
      expect.objectContaining({
        exitCode: 2,
        message:
          '--max-skew: must be a duration greater than 0 and at most 1d (e.g. 5s, 500ms; a bare number is seconds) (got "25h")',
      }),
    );
  });

  it('refuses an --address or --relay that is not host:port with a port in 1..65535', () => {
    expect(hostPortOf('--relay', 'relay.meshauth:4252')).toBe('relay.meshauth:4252');
    expect(hostPortOf('--relay', '[::1]:4252')).toBe('[::1]:4252');
    for (const bad of ['relay', 'relay:99999', 'relay:0', ':4252', 'a b:1'])
      expect(() => connect({ relay: bad }, io()), bad).toThrow(
        expect.objectContaining({
          exitCode: 2,
          message: expect.stringMatching(/^--relay: must be host:port .*\(got ".*"\)$/),
        }),
      );
  });

  it('names the TLS file that is not PEM of the right kind, as a usage error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshauth-cli-tls-'));
    try {
      const ca = await DevCa.create('cli.test');
      const svid = await ca.issue('spiffe://cli.test/ops/admin');
      const files = {
        cert: join(dir, 'me.crt'),
        key: join(dir, 'me.key'),
        ca: join(dir, 'ca.pem'),
        junk: join(dir, 'junk'),
      };
      writeFileSync(files.cert, svid.chainPem);
      writeFileSync(files.key, svid.keyPem);
      writeFileSync(files.ca, ca.caPem);
      writeFileSync(files.junk, 'node-a\n');
      const g = { relay: '127.0.0.1:4252', tlsCert: files.cert, tlsKey: files.key, tlsBundle: files.ca };
      connect(g, io()).close();
      for (const [flag, field, kind] of [
        ['--tls-cert', 'tlsCert', 'certificate file'],
        ['--tls-key', 'tlsKey', 'private key'],
        ['--tls-bundle', 'tlsBundle', 'certificate file'],
      ] as const) {
        expect(() => connect({ ...g, [field]: files.junk }, io()), flag).toThrow(
          expect.objectContaining({
            exitCode: 2,
            message: expect.stringContaining(`${flag} ${files.junk}: not a PEM ${kind}`),
          }),
        );
      }
      // a key where the certificate belongs
      expect(() => connect({ ...g, tlsCert: files.key }, io())).toThrow(
        /--tls-cert .*not a PEM certificate file/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
