import * as z from 'zod';
import { parseDuration } from './duration.js';
import { interfaceNameProblem, normalizeIp, showValue, spiffeIdProblem } from './validate.js';

/*
 * Field schemas with the error messages the configuration files promise. Each accepts `unknown`
 * so that it can say exactly what it got.
 */

function fail(ctx: z.core.$RefinementCtx, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER as never;
}

export function intField(min: number, max: number, def?: number) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): number => {
      if (v === undefined && def !== undefined) return def;
      if (v === undefined) return fail(ctx, 'is required');
      if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
      return fail(ctx, `must be an integer between ${min} and ${max} (got ${showValue(v)})`);
    });
}

/** A number greater than `gt` and at most `max`. */
export function numberField(gt: number, max: number, def: number) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): number => {
      if (v === undefined) return def;
      if (typeof v === 'number' && Number.isFinite(v) && v > gt && v <= max) return v;
      return fail(ctx, `must be a number greater than ${gt} and at most ${max} (got ${showValue(v)})`);
    });
}

/** Like numberField, but 0 is also accepted and means "off". */
export function fractionOrOffField(max: number, def: number) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): number => {
      if (v === undefined) return def;
      if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max) return v;
      return fail(ctx, `must be 0 (off) or a number greater than 0 and at most ${max} (got ${showValue(v)})`);
    });
}

export function boolField(def: boolean) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): boolean => {
      if (v === undefined) return def;
      if (typeof v === 'boolean') return v;
      return fail(ctx, `must be true or false (got ${showValue(v)})`);
    });
}

/** Duration in ms: "250ms", "5s", "1h", "30d" or a number of milliseconds. */
export function durationField(def: string, opts: { minMs?: number } = {}) {
  const minMs = opts.minMs ?? 1;
  return z
    .unknown()
    .optional()
    .transform((v, ctx): number => {
      const ms = parseDuration(v === undefined ? def : v);
      if (ms === undefined) {
        return fail(
          ctx,
          `must be a duration like "250ms", "5s", "1h", "30d" or a number of milliseconds (got ${showValue(v)})`,
        );
      }
      if (ms < minMs) return fail(ctx, `must be at least ${minMs}ms (got ${showValue(v)})`);
      return ms;
    });
}

export function stringField(def?: string, opts: { allowEmpty?: boolean } = {}) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
      if (v === undefined && def !== undefined) return def;
      if (v === undefined) return fail(ctx, 'is required');
      if (typeof v !== 'string') return fail(ctx, `must be a string (got ${showValue(v)})`);
      if (v === '' && !opts.allowEmpty) return fail(ctx, 'must not be empty');
      return v;
    });
}

export function optionalStringField() {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): string | undefined => {
      if (v === undefined) return undefined;
      if (typeof v !== 'string' || v === '')
        return fail(ctx, `must be a non-empty string (got ${showValue(v)})`);
      return v;
    });
}

/** Optional absolute http: or https: URL (WHATWG URL parser), e.g. an OTLP/HTTP endpoint. */
export function optionalHttpUrlField() {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): string | undefined => {
      if (v === undefined) return undefined;
      const url = typeof v === 'string' && URL.canParse(v) ? new URL(v) : undefined;
      if (typeof v !== 'string' || !url || (url.protocol !== 'http:' && url.protocol !== 'https:'))
        return fail(ctx, `must be an http:// or https:// URL (got ${showValue(v)})`);
      return v;
    });
}

export function enumField<const T extends string>(values: readonly T[], def?: T) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): T => {
      if (v === undefined && def !== undefined) return def;
      if (v === undefined)
        return fail(ctx, `is required (one of ${values.map((x) => JSON.stringify(x)).join(', ')})`);
      if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
      return fail(
        ctx,
        `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')} (got ${showValue(v)})`,
      );
    });
}

export function ipField(def?: string) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
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
  return z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
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
  return z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
      if (v === undefined) return fail(ctx, 'is required');
      if (typeof v !== 'string') return fail(ctx, `must be a SPIFFE ID string (got ${showValue(v)})`);
      const problem = spiffeIdProblem(v, requirePath);
      if (problem) return fail(ctx, `is not a valid SPIFFE ID: ${problem} (got ${showValue(v)})`);
      return v;
    });
}

export function interfaceField(def?: string) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
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
  return z
    .unknown()
    .optional()
    .transform((v, ctx): HostPort | null => {
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

/** Octal file mode as a string, e.g. "0600". Numbers are refused: YAML reads 0600 as decimal 600. */
export function fileModeField(def: string) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): number => {
      const raw = v === undefined ? def : v;
      if (typeof raw === 'string' && /^0?[0-7]{3}$/.test(raw)) return parseInt(raw, 8);
      return fail(ctx, `must be an octal mode in quotes, like "0600" (got ${showValue(v)})`);
    });
}
