import { describe, expect, it } from 'vitest';
import { main, secondsOrDuration } from '../../../src/relay/main.js';

async function relay(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += t), err: (t) => (err += t), columns: () => 200 });
  return { code, out, err };
}

describe('secondsOrDuration', () => {
  it.each<[string, number]>([
    ['5m', 300_000],
    ['90s', 90_000],
    ['1.5s', 1_500],
    ['250ms', 250],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    // bare numbers are seconds, as before the flags took units
    ['300', 300_000],
    ['1.5', 1_500],
    [' 60 ', 60_000],
  ])('%j is %d ms', (value, ms) => {
    expect(secondsOrDuration('--witness-max-skew', value, 1, 86_400_000)).toBe(ms);
  });

  it.each(['', '0', '0s', '2x', '5 m', '-5s', '1e3', '25h', 'm', '0.0001'])('refuses %j', (value) => {
    expect(() => secondsOrDuration('--witness-max-skew', value, 1_000, 86_400_000)).toThrow(
      `--witness-max-skew: must be a duration between 1s and 1d (e.g. 30s, 5m; a bare number is seconds) (got ${JSON.stringify(value)})`,
    );
  });

  it('holds the bounds inclusive', () => {
    expect(secondsOrDuration('--node-deadline', '1ms', 1, 600_000)).toBe(1);
    expect(secondsOrDuration('--node-deadline', '10m', 1, 600_000)).toBe(600_000);
    expect(() => secondsOrDuration('--node-deadline', '600.001', 1, 600_000)).toThrow(/--node-deadline/);
  });
});

describe('meshauth-relay --help', () => {
  it('marks --allow required and shows duration flags with unit defaults', async () => {
    const r = await relay(['--help']);
    expect(r.code).toBe(0);
    const line = (flag: string): string => {
      const at = r.out.indexOf(`  ${flag} `);
      expect(at).toBeGreaterThanOrEqual(0);
      // an option's text runs to the next option line
      const rest = r.out.slice(at + 2);
      const next = rest.search(/\n {2}-/);
      return (next < 0 ? rest : rest.slice(0, next)).replace(/\s+/g, ' ');
    };
    expect(line('--allow')).toMatch(/\(required\)/);
    for (const f of ['--tls-cert', '--tls-key', '--tls-bundle']) expect(line(f)).toMatch(/\(required\)/);
    expect(line('--witness-max-skew')).toMatch(
      /^--witness-max-skew <duration> .*a bare number is seconds.*\(default: "5m"\)/,
    );
    expect(line('--node-deadline')).toMatch(
      /^--node-deadline <duration> .*a bare number is seconds.*\(default: "5s"\)/,
    );
  });

  it('a missing --allow is a usage error naming it', async () => {
    const r = await relay([
      '--tls-cert',
      'c',
      '--tls-key',
      'k',
      '--tls-bundle',
      'b',
      '--node',
      'a=127.0.0.1:1',
    ]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^meshauth-relay: --allow: required \(at least one query client SPIFFE ID\)\n/);
  });
});
