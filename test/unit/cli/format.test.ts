import { describe, expect, it } from 'vitest';
import {
  detailsSummary,
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
    expect(formatTtl(500)).toBe('0s');
    expect(formatTtl(-1)).toBe('expired');
    expect(detailsSummary('{"durationMs":12,"serials":["0a"]}')).toBe('durationMs=12 serials=["0a"]');
    expect(detailsSummary(JSON.stringify({ x: 'y'.repeat(200) }), 20)).toHaveLength(20);
  });
});
