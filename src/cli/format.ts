import { CliError } from './errors.js';

/** Columns padded to the widest cell; the last column is not padded. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/**
 * A table under a blank line, or nothing at all when there are no rows: output never ends with a
 * heading that nothing follows.
 */
export function renderSection(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return rows.length === 0 ? '' : `\n${renderTable(header, rows)}`;
}

/** FIELD VALUE lines without a header; a field whose value is empty is left out, not shown blank. */
export function renderFields(rows: readonly (readonly [string, string])[]): string {
  const shown = rows.filter(([, v]) => v.trim() !== '');
  return shown.length === 0 ? '' : renderTable(['FIELD', 'VALUE'], shown).split('\n').slice(1).join('\n');
}

/** Pad cells to fixed widths (streaming output, where later rows are not known yet). */
export function renderRow(cells: readonly string[], widths: readonly number[]): string {
  return (
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd() + '\n'
  );
}

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** "10m", "1h30m", "2d" → ms. */
export function parseDurationMs(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    matched += m[0].length;
  }
  return matched === text.length && matched > 0 ? total : undefined;
}

/**
 * --since / --until: a duration before now ("10m") or an ISO 8601 time, as ms since the epoch.
 * Usage error (exit 2) for anything else, and for a time before 1970-01-01 (a duration longer than
 * the time since then, or an ISO time before it): the API takes only times after the epoch.
 */
export function parseTimeArg(flag: string, text: string, now: number): number {
  const d = parseDurationMs(text);
  let t: number | undefined;
  if (d !== undefined) t = now - d;
  else if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const parsed = Date.parse(text);
    if (!Number.isNaN(parsed)) t = parsed;
  }
  if (t !== undefined) {
    if (t >= 0) return t;
    throw new CliError(
      `${flag}: "${text}" is before 1970-01-01T00:00:00Z, earlier than any event${flag === '--since' ? ' (leave --since out for all events)' : ''}`,
      2,
    );
  }
  throw new CliError(
    `${flag}: "${text}" is neither a duration (10m, 2h, 1d) nor an ISO time (2026-01-02T15:04:05Z)`,
    2,
  );
}

/**
 * An API time (ms since the epoch) as ISO 8601; "-" for none (0); a number no Date can hold (past
 * the year 275760, a peer gone wrong) is shown as it is, marked, instead of failing the command
 * with "Invalid time value".
 */
export function isoTime(ms: number): string {
  if (!(ms > 0)) return '-';
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `(not a time: ${ms})` : d.toISOString();
}

/**
 * A non-negative span of time, whole units largest first with zero units left out:
 * 3725000 → "1h2m5s", 3590000 → "59m50s", 3600000 → "1h", 90061000 → "1d1h1m1s". Spans under a
 * second are "<1s" (or "0s" when exactly zero); sub-second remainders of longer spans are dropped.
 */
export function formatSpan(ms: number): string {
  if (ms <= 0) return '0s';
  if (ms < 1000) return '<1s';
  let s = Math.floor(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    const n = Math.floor(s / size);
    s -= n * size;
    if (n > 0) parts.push(`${n}${unit}`);
  }
  return parts.join('');
}

/** Time left until an expiry: formatSpan of it, or "expired" once it is zero or less. */
export function formatTtl(ms: number): string {
  return ms <= 0 ? 'expired' : formatSpan(ms);
}

/** Compact one-line "k=v k=v" of a details object, truncated. */
export function detailsSummary(json: string, max = 80): string {
  if (!json) return '';
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.slice(0, max);
  }
  const s = Object.entries(obj)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export type OutputFormat = 'table' | 'json';

export function parseOutput(v: string): OutputFormat {
  if (v === 'table' || v === 'json') return v;
  throw new CliError(`-o/--output: must be table or json (got ${JSON.stringify(v)})`, 2);
}
