import { describe, expect, it } from 'vitest';
import {
  detailsSummary,
  formatSpan,
  formatTtl,
  parseDurationMs,
  parseTimeArg,
  renderTable,
} from '../../../src/cli/format.js';

describe('cli format helpers', () => {
  it('aligns table columns to the widest cell', () => {
    const t = renderTable(
      ['A', 'LONGER'],
      [
        ['xxxx', 'y'],
        ['z', 'w'],
      ],
    );
    expect(t).toBe('A     LONGER\nxxxx  y\nz     w\n');
  });

  it('parses durations and times', () => {
    expect(parseDurationMs('10m')).toBe(600_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('10x')).toBeUndefined();
    expect(parseDurationMs('')).toBeUndefined();
    expect(parseTimeArg('--since', '2m', 1_000_000)).toBe(880_000);
    expect(parseTimeArg('--since', '2026-01-02T03:04:05Z', 0)).toBe(Date.parse('2026-01-02T03:04:05Z'));
    expect(() => parseTimeArg('--since', 'yesterday', 0)).toThrow(/--since: "yesterday" is neither/);
  });

  it('formats TTLs and detail summaries', () => {
    expect(formatTtl(3_725_000)).toBe('1h2m5s');
    expect(formatTtl(60_000)).toBe('1m');
    expect(formatTtl(-1)).toBe('expired');
    expect(detailsSummary('{"durationMs":12,"serials":["0a"]}')).toBe('durationMs=12 serials=["0a"]');
    expect(detailsSummary(JSON.stringify({ x: 'y'.repeat(200) }), 20)).toHaveLength(20);
  });

  it('keeps a seconds field that ends in 0 (50s is not 5)', () => {
    expect(formatTtl(3_590_000)).toBe('59m50s');
    expect(formatTtl(70_000)).toBe('1m10s');
    expect(formatTtl(10_000)).toBe('10s');
    expect(formatTtl(20_000)).toBe('20s');
    expect(formatTtl(3_600_000)).toBe('1h');
    expect(formatTtl(3_610_000)).toBe('1h10s');
    expect(formatTtl(3_630_000)).toBe('1h30s');
    expect(formatTtl(36_000_000)).toBe('10h');
    expect(formatTtl(600_000)).toBe('10m');
  });

  it('formats zero, sub-second and day-long spans', () => {
    expect(formatTtl(0)).toBe('expired');
    expect(formatTtl(-3_600_000)).toBe('expired');
    expect(formatTtl(1)).toBe('<1s');
    expect(formatTtl(999)).toBe('<1s');
    expect(formatTtl(1000)).toBe('1s');
    expect(formatTtl(1999)).toBe('1s');
    expect(formatTtl(86_400_000)).toBe('1d');
    expect(formatTtl(86_400_000 + 10_000)).toBe('1d10s');
    expect(formatTtl(90_061_000)).toBe('1d1h1m1s');
    expect(formatTtl(10 * 86_400_000 + 10 * 3_600_000 + 10 * 60_000 + 10_000)).toBe('10d10h10m10s');
    expect(formatTtl(365 * 86_400_000)).toBe('365d');
    expect(formatSpan(0)).toBe('0s');
    expect(formatSpan(-5)).toBe('0s');
    expect(formatSpan(400)).toBe('<1s');
    expect(formatSpan(3_590_000)).toBe('59m50s');
  });

  it('formats every multiple of 10 s up to two days so that it parses back to the same span', () => {
    const shape = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;
    const wrong: string[] = [];
    for (let ms = 10_000; ms <= 2 * 86_400_000 + 3_600_000; ms += 10_000) {
      const text = formatTtl(ms);
      const m = shape.exec(text);
      const [d, h, min, s] = (m?.slice(1) ?? []).map((f) => (f === undefined ? undefined : Number(f)));
      const ok =
        m !== null &&
        // each field is below the next unit up, and a field that is shown is never 0
        (h ?? 0) < 24 &&
        (min ?? 0) < 60 &&
        (s ?? 0) < 60 &&
        [d, h, min, s].every((f) => f === undefined || f > 0) &&
        parseDurationMs(text) === ms &&
        // the sub-second remainder is dropped, never rounded up
        formatTtl(ms + 999) === text;
      if (!ok) wrong.push(`${ms} -> ${text}`);
    }
    expect(wrong).toEqual([]);
  });
});
