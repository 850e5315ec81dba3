import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../../src/config/index.js';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['5s', 5000],
    ['1.5s', 1500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['30d', 2_592_000_000],
    ['1000', 1000],
    [0, 0],
    [750, 750],
  ] as Array<[string | number, number]>)('%s -> %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(['', 'abc', '5 s', '-1s', '1w', '1h30m', '5S', -5, 1.5, Number.NaN, null, {}])(
    'rejects %j',
    (input) => {
      expect(parseDuration(input)).toBeUndefined();
    },
  );

  it('formats with the largest exact unit', () => {
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(5000)).toBe('5s');
    expect(formatDuration(3_600_000)).toBe('1h');
    expect(formatDuration(90_000)).toBe('90s');
  });

  it('formats every multiple of 10 s up to two days so that it parses back exactly', () => {
    for (let ms = 0; ms <= 2 * 86_400_000; ms += 10_000) {
      expect(parseDuration(formatDuration(ms)), `${ms} -> ${formatDuration(ms)}`).toBe(ms);
    }
    for (const ms of [1, 999, 1001, 59_999, 86_400_001]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});
