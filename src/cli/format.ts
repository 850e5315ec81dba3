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

/** --since / --until: a duration before now ("10m") or an ISO 8601 time. */
export function parseTimeArg(flag: string, text: string, now: number): number {
  const d = parseDurationMs(text);
  if (d !== undefined) return now - d;
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const t = Date.parse(text);
    if (!Number.isNaN(t)) return t;
  }
  throw new CliError(
    `${flag}: "${text}" is neither a duration (10m, 2h, 1d) nor an ISO time (2026-01-02T15:04:05Z)`,
    2,
  );
}

export function isoTime(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : '-';
}

/** 3725000 → "1h2m5s"; negative → "expired". */
export function formatTtl(ms: number): string {
  if (ms <= 0) return 'expired';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return (
    [d ? `${d}d` : '', h ? `${h}h` : '', m ? `${m}m` : '', `${s}s`].join('').replace(/^(.+?)0s$/, '$1') ||
    '0s'
  );
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
  throw new CliError(`-o/--output must be table or json, got "${v}"`, 2);
}
