import * as z from 'zod';
import { formatDuration, parseDuration } from './duration.js';
import { interfaceNameProblem, normalizeIp, showValue, spiffeIdProblem } from './validate.js';

/*
 * Field schemas with the error messages the configuration files promise. Each accepts `unknown`
 * so that it can say exactly what it got.
 */

function fail(ctx: z.core.$RefinementCtx, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER as never;
}

/** A field schema: `check` gets the raw value (undefined when the key is absent) and returns it or fail()s. */
function field<T>(check: (v: unknown, ctx: z.core.$RefinementCtx) => T) {
  return z.unknown().optional().transform(check);
}

export function intField(min: number, max: number, def?: number) {
  return field((v, ctx): number => {
    if (v === undefined && def !== undefined) return def;
    if (v === undefined) return fail(ctx, 'is required');
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    return fail(ctx, `must be an integer between ${min} and ${max} (got ${showValue(v)})`);
  });
}

/** A number greater than `gt` and at most `max`. */
export function numberField(gt: number, max: number, def: number) {
  return field((v, ctx): number => {
    if (v === undefined) return def;
    if (typeof v === 'number' && Number.isFinite(v) && v > gt && v <= max) return v;
    return fail(ctx, `must be a number greater than ${gt} and at most ${max} (got ${showValue(v)})`);
  });
}

/** Like numberField, but 0 is also accepted and means "off". */
export function fractionOrOffField(max: number, def: number) {
  return field((v, ctx): number => {
    if (v === undefined) return def;
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max) return v;
    return fail(ctx, `must be 0 (off) or a number greater than 0 and at most ${max} (got ${showValue(v)})`);
  });
}

export function boolField(def: boolean) {
  return field((v, ctx): boolean => {
    if (v === undefined) return def;
    if (typeof v === 'boolean') return v;
    return fail(ctx, `must be true or false (got ${showValue(v)})`);
  });
}

/** An integer power of two between min and max (both powers of two). */
export function powerOfTwoField(min: number, max: number, def: number) {
  return field((v, ctx): number => {
    if (v === undefined) return def;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max && (v & (v - 1)) === 0) return v;
    return fail(ctx, `must be a power of two between ${min} and ${max} (got ${showValue(v)})`);
  });
}

/**
 * Duration in ms: "250ms", "5s", "1h", "30d" or a bare number, which is milliseconds; between minMs
 * and maxMs inclusive (every duration has an upper bound: schema.ts DURATION_LIMITS).
 */
export function durationField(def: string, limits: { readonly minMs: number; readonly maxMs: number }) {
  const { minMs, maxMs } = limits;
  return field((v, ctx): number => {
    const ms = parseDuration(v === undefined ? def : v);
    if (ms === undefined) {
      return fail(
        ctx,
        `must be a duration like "250ms", "5s", "1h", "30d" or a number of milliseconds (got ${showValue(v)})`,
      );
    }
    if (ms < minMs || ms > maxMs)
      return fail(
        ctx,
        `must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)} (got ${showValue(v)}${typeof v === 'number' || (typeof v === 'string' && /^\s*\d+\s*$/.test(v)) ? ': a bare number is milliseconds' : ''})`,
      );
    return ms;
  });
}

export function stringField(def?: string, opts: { allowEmpty?: boolean } = {}) {
  return field((v, ctx): string => {
    if (v === undefined && def !== undefined) return def;
    if (v === undefined) return fail(ctx, 'is required');
    if (typeof v !== 'string') return fail(ctx, `must be a string (got ${showValue(v)})`);
    if (v === '' && !opts.allowEmpty) return fail(ctx, 'must not be empty');
    return v;
  });
}

export function optionalStringField() {
  return field((v, ctx): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '')
      return fail(ctx, `must be a non-empty string (got ${showValue(v)})`);
    return v;
  });
}

/** Optional absolute http: or https: URL (WHATWG URL parser), e.g. an OTLP/HTTP endpoint. */
export function optionalHttpUrlField() {
  return field((v, ctx): string | undefined => {
    if (v === undefined) return undefined;
    const url = typeof v === 'string' && URL.canParse(v) ? new URL(v) : undefined;
    if (typeof v !== 'string' || !url || (url.protocol !== 'http:' && url.protocol !== 'https:'))
      return fail(ctx, `must be an http:// or https:// URL (got ${showValue(v)})`);
    return v;
  });
}

/**
 * One of `values`. `hints` maps a near-miss value (a word from another place, like the
 * MutualAuthPolicy mode "enforce" in the policy file) to a note appended to its error.
 */
export function enumField<const T extends string>(
  values: readonly T[],
  def?: T,
  hints: Readonly<Record<string, string>> = {},
) {
  return field((v, ctx): T => {
    if (v === undefined && def !== undefined) return def;
    if (v === undefined)
      return fail(ctx, `is required (one of ${values.map((x) => JSON.stringify(x)).join(', ')})`);
    if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
    const hint = typeof v === 'string' && Object.hasOwn(hints, v) ? ` (${hints[v]})` : '';
    return fail(
      ctx,
      `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')} (got ${showValue(v)})${hint}`,
    );
  });
}

export function ipField(def?: string) {
  return field((v, ctx): string => {
    if (v === undefined && def !== undefined) return def;
    if (v === undefined) return fail(ctx, 'is required');
    const ip = typeof v === 'string' ? normalizeIp(v) : undefined;
    if (ip === undefined) return fail(ctx, `must be an IPv4 or IPv6 address (got ${showValue(v)})`);
    return ip;
  });
}

/**
 * A SPIFFE ID, or a template of one per node: `{node}` stands for the node name (`node`) and
 * `{trustDomain}` for the dev CA's trust domain; the loader substitutes both. Checked as the ID it
 * becomes for a node named "node" in trust domain "example.org".
 */
export function spiffeIdTemplateField() {
  return field((v, ctx): string => {
    if (v === undefined) return fail(ctx, 'is required');
    if (typeof v !== 'string') return fail(ctx, `must be a SPIFFE ID string (got ${showValue(v)})`);
    const problem = spiffeIdProblem(
      v.replaceAll('{node}', 'node').replaceAll('{trustDomain}', 'example.org'),
      true,
    );
    if (problem)
      return fail(
        ctx,
        `is not a valid SPIFFE ID or template ({node}, {trustDomain}): ${problem} (got ${showValue(v)})`,
      );
    return v;
  });
}

export function spiffeIdField(requirePath = true) {
  return field((v, ctx): string => {
    if (v === undefined) return fail(ctx, 'is required');
    if (typeof v !== 'string') return fail(ctx, `must be a SPIFFE ID string (got ${showValue(v)})`);
    const problem = spiffeIdProblem(v, requirePath);
    if (problem) return fail(ctx, `is not a valid SPIFFE ID: ${problem} (got ${showValue(v)})`);
    return v;
  });
}

export function interfaceField(def?: string) {
  return field((v, ctx): string => {
    if (v === undefined && def !== undefined) return def;
    if (v === undefined) return fail(ctx, 'is required');
    if (typeof v !== 'string') return fail(ctx, `must be an interface name (got ${showValue(v)})`);
    const problem = interfaceNameProblem(v);
    if (problem) return fail(ctx, `is not a valid interface name: ${problem} (got ${showValue(v)})`);
    return v;
  });
}

export interface HostPort {
  host: string;
  port: number;
}

/** Parses "host:port" or "[v6]:port". */
export function parseHostPort(v: string): HostPort | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:[\]]+):(\d+)$/.exec(v);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host: m[1] as string, port };
}

/** "host:port"; with `allowEmpty`, "" means disabled and yields null. */
export function hostPortField(def: string | undefined, opts: { allowEmpty?: boolean } = {}) {
  return field((v, ctx): HostPort | null => {
    const raw = v === undefined ? def : v;
    if (raw === undefined) return fail(ctx, 'is required');
    if (raw === '' && opts.allowEmpty) return null;
    const hp = typeof raw === 'string' ? parseHostPort(raw) : undefined;
    if (!hp) {
      return fail(
        ctx,
        `must be "host:port" with a port between 1 and 65535${opts.allowEmpty ? ', or "" to disable' : ''} (got ${showValue(v)})`,
      );
    }
    return hp;
  });
}

/**
 * Octal file mode as a string, e.g. "0600". Numbers are refused: YAML reads 0600 as decimal 600.
 * With `noOtherAccess`, a mode giving other users (the last digit) any access is refused, naming
 * `why` (e.g. for the API socket, where any access lets a local user call the API).
 */
export function fileModeField(def: string, opts: { noOtherAccess?: { why: string } } = {}) {
  return field((v, ctx): number => {
    const raw = v === undefined ? def : v;
    if (typeof raw !== 'string' || !/^0?[0-7]{3}$/.test(raw))
      return fail(ctx, `must be an octal mode in quotes, like "0600" (got ${showValue(v)})`);
    const mode = parseInt(raw, 8);
    if (opts.noOtherAccess && (mode & 0o007) !== 0)
      return fail(
        ctx,
        `must give other users no access (last digit 0, like "0600" or "0660"): ${opts.noOtherAccess.why} (got ${showValue(v)})`,
      );
    return mode;
  });
}
