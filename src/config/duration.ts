const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * Parses a duration: a non-negative number of milliseconds, or a string "<number><unit>" with
 * unit ms, s, m, h or d ("250ms", "5s", "1.5h", "30d"). A string of digits alone is milliseconds.
 * Returns whole milliseconds, or undefined when the input is not a duration.
 */
export function parseDuration(input: unknown): number | undefined {
  if (typeof input === 'number') {
    return Number.isFinite(input) && input >= 0 && Number.isInteger(input) ? input : undefined;
  }
  if (typeof input !== 'string') return undefined;
  const s = input.trim();
  if (/^\d+$/.test(s)) return Number(s);
  const m = DURATION_RE.exec(s);
  if (!m) return undefined;
  const ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return Number.isSafeInteger(Math.round(ms)) ? Math.round(ms) : undefined;
}

/** Formats milliseconds with the largest unit that divides them exactly ("250ms", "5s", "1h"). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit] as number;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
