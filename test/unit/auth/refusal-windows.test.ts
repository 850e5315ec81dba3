import { describe, expect, it } from 'vitest';
import { countListed, RefusalWindows, type WindowSpan } from '../../../src/auth/refusal-windows.js';
import { FakeClock } from '../../helpers/fake-clock.js';

function setUp(windowMs = 10_000) {
  const clock = new FakeClock(1_000_000);
  const written: { key: string; counts: { n: number }; span: WindowSpan }[] = [];
  const windows = new RefusalWindows<{ n: number }>({
    clock,
    windowMs,
    name: 'test windows',
    write: (key, counts, span) => written.push({ key, counts: { ...counts }, span }),
  });
  const count = (key: string): boolean => {
    const c = windows.at(key, () => ({ n: 0 }));
    if (!c) return false;
    c.n++;
    return true;
  };
  return { clock, written, windows, count };
}

describe('RefusalWindows', () => {
  it('writes each key once when the window of the first refusal ends, with its span, then starts afresh', () => {
    const { clock, written, count } = setUp();
    expect(clock.pending).toBe(0);
    expect(count('a')).toBe(true);
    expect(clock.pending).toBe(1);
    clock.advance(4_000);
    // Opened later, it ends with the open window: one timer for all.
    expect(count('b')).toBe(true);
    expect(count('a')).toBe(true);
    expect(clock.pending).toBe(1);
    clock.advance(5_999);
    expect(written).toEqual([]);
    clock.advance(1);
    expect(written).toEqual([
      { key: 'a', counts: { n: 2 }, span: { startedAtMs: 1_000_000, endedAtMs: 1_010_000 } },
      { key: 'b', counts: { n: 1 }, span: { startedAtMs: 1_004_000, endedAtMs: 1_010_000 } },
    ]);
    expect(clock.pending).toBe(0);
    // Nothing open: nothing more is written until the next refusal opens a window.
    clock.advance(60_000);
    expect(written).toHaveLength(2);
    expect(count('a')).toBe(true);
    clock.advance(10_000);
    expect(written.slice(2)).toEqual([
      { key: 'a', counts: { n: 1 }, span: { startedAtMs: 1_070_000, endedAtMs: 1_080_000 } },
    ]);
  });

  it('close() writes the open windows at once, cancels the timer, opens nothing after; idempotent', () => {
    const { clock, written, windows, count } = setUp();
    count('a');
    count('a');
    clock.advance(2_500);
    windows.close();
    expect(written).toEqual([
      { key: 'a', counts: { n: 2 }, span: { startedAtMs: 1_000_000, endedAtMs: 1_002_500 } },
    ]);
    expect(clock.pending).toBe(0);
    windows.close();
    expect(count('a')).toBe(false);
    expect(clock.pending).toBe(0);
    clock.advance(20_000);
    expect(written).toHaveLength(1);
  });

  it('close() with nothing open writes nothing', () => {
    const { written, windows } = setUp();
    windows.close();
    expect(written).toEqual([]);
  });

  it('refuses a window length that is not > 0, naming its owner', () => {
    for (const ms of [0, -1, Number.NaN])
      expect(() => setUp(ms)).toThrow(new RangeError('test windows: windowMs must be > 0'));
  });
});

describe('countListed', () => {
  it('counts keys already listed or while fewer than max are, and refuses new keys beyond', () => {
    const m = new Map<string, number>();
    expect(countListed(m, 'x', 2)).toBe(true);
    expect(countListed(m, 'y', 2)).toBe(true);
    expect(countListed(m, 'z', 2)).toBe(false);
    expect(countListed(m, 'x', 2)).toBe(true);
    expect([...m]).toEqual([
      ['x', 2],
      ['y', 1],
    ]);
  });
});
