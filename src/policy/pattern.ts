import { spiffeIdProblem } from '../config/index.js';

/**
 * A SPIFFE ID pattern in a policy rule:
 * - `*` alone: any identity (in any trust domain);
 * - an exact SPIFFE ID;
 * - a glob: the trust domain is literal; inside a path segment `*` matches any characters of that
 *   segment (`spiffe://demo.local/ns/demo/sa/web-*`); a last segment that is exactly `*` matches
 *   one or more whole segments (`spiffe://demo.local/ns/demo/*` matches every ID under ns/demo/,
 *   but not `spiffe://demo.local/ns/demo-other/...`).
 */
export interface IdPattern {
  readonly text: string;
  readonly kind: 'any' | 'exact' | 'glob';
  matches(spiffeId: string): boolean;
}

const SEGMENT_GLOB_RE = /^[A-Za-z0-9._*-]+$/;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
}

/** Parses a pattern; returns the reason when it is invalid. */
export function parseIdPattern(text: string): IdPattern | string {
  if (text === '*') return { text, kind: 'any', matches: () => true };
  if (!text.includes('*')) {
    const problem = spiffeIdProblem(text, true);
    if (problem) return `is not a valid SPIFFE ID or pattern: ${problem}`;
    return { text, kind: 'exact', matches: (id) => id === text };
  }
  if (!text.startsWith('spiffe://'))
    return 'must be "*", a SPIFFE ID, or a pattern starting with "spiffe://"';
  const rest = text.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (slash < 0 || td.includes('*')) return 'may use "*" only in the path, not in the trust domain';
  const tdProblem = spiffeIdProblem(`spiffe://${td}/x`, true);
  if (tdProblem) return `is not a valid pattern: ${tdProblem}`;
  const segments = rest.slice(slash + 1).split('/');
  const parts: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as string;
    if (seg === '') return 'has an empty path segment (or a trailing slash)';
    if (seg === '.' || seg === '..') return 'has a "." or ".." path segment';
    if (!SEGMENT_GLOB_RE.test(seg))
      return `has an invalid path segment "${seg}" (allowed: A-Z a-z 0-9 . - _ *)`;
    if (seg.includes('**')) return 'must not contain "**" (a final "/*" already matches deeper paths)';
    if (seg === '*' && i === segments.length - 1) parts.push('[^/]+(?:/[^/]+)*');
    else parts.push(seg.split('*').map(escapeRe).join('[^/]*'));
  }
  const re = new RegExp(`^spiffe://${escapeRe(td)}/${parts.join('/')}$`);
  return { text, kind: 'glob', matches: (id) => re.test(id) };
}
