import { SpiffeIdError } from './errors.js';

const SCHEME = 'spiffe://';
/** Longest SPIFFE ID meshauth accepts, in bytes (the spec requires support up to this size). */
export const MAX_SPIFFE_ID_BYTES = 2048;
/** Longest trust domain name, in bytes. */
export const MAX_TRUST_DOMAIN_BYTES = 255;

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e ||
    c === 0x2d ||
    c === 0x5f
  );
}

const TD_CHARS =
  'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
const PATH_CHARS = 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';

function trustDomainProblem(name: string): string | undefined {
  if (name.length === 0) return 'trust domain is missing';
  if (Buffer.byteLength(name) > MAX_TRUST_DOMAIN_BYTES) {
    return `trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`;
  }
  for (let i = 0; i < name.length; i++) {
    if (isTrustDomainChar(name.charCodeAt(i))) continue;
    switch (name[i]) {
      case ':':
        return `${TD_CHARS} (a port is not allowed)`;
      case '@':
        return `${TD_CHARS} (userinfo is not allowed)`;
      case '%':
        return `${TD_CHARS} (percent-encoding is not allowed)`;
      case '?':
      case '#':
        return `${TD_CHARS} (a query or fragment is not allowed)`;
      default:
        return TD_CHARS;
    }
  }
  return undefined;
}

function pathProblem(path: string): string | undefined {
  if (path === '') return undefined;
  if (path.endsWith('/')) return 'path cannot have a trailing slash';
  const segments = path.slice(1).split('/');
  for (const seg of segments) {
    if (seg === '') return 'path cannot contain empty segments';
    if (seg === '.' || seg === '..') return 'path cannot contain dot segments';
    for (let i = 0; i < seg.length; i++) {
      if (isPathChar(seg.charCodeAt(i))) continue;
      switch (seg[i]) {
        case '%':
          return `${PATH_CHARS} (percent-encoding is not allowed)`;
        case '?':
          return `${PATH_CHARS} (a query is not allowed)`;
        case '#':
          return `${PATH_CHARS} (a fragment is not allowed)`;
        default:
          return PATH_CHARS;
      }
    }
  }
  return undefined;
}

/** A SPIFFE trust domain, e.g. `example.org`. Immutable. */
export class TrustDomain {
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
    Object.freeze(this);
  }

  /** @internal validated by the parsers below. */
  static fromValidated(name: string): TrustDomain {
    return new TrustDomain(name);
  }

  /** The trust domain's own SPIFFE ID, `spiffe://<name>`. */
  idString(): string {
    return SCHEME + this.name;
  }

  toString(): string {
    return this.name;
  }

  equals(other: TrustDomain): boolean {
    return this.name === other.name;
  }
}

/** A parsed, valid SPIFFE ID. Immutable; `toString()` is the canonical form. */
export class SpiffeId {
  readonly trustDomain: TrustDomain;
  /** Empty for a trust domain ID, otherwise starts with '/'. */
  readonly path: string;
  private readonly text: string;

  private constructor(trustDomain: TrustDomain, path: string) {
    this.trustDomain = trustDomain;
    this.path = path;
    this.text = SCHEME + trustDomain.name + path;
    Object.freeze(this);
  }

  /** @internal */
  static fromValidated(trustDomain: TrustDomain, path: string): SpiffeId {
    return new SpiffeId(trustDomain, path);
  }

  /** True for `spiffe://td` (no path), which names the trust domain rather than a workload. */
  get isRoot(): boolean {
    return this.path === '';
  }

  /** Path segments, e.g. ['ns', 'demo', 'sa', 'web']. */
  segments(): string[] {
    return this.path === '' ? [] : this.path.slice(1).split('/');
  }

  toString(): string {
    return this.text;
  }

  toJSON(): string {
    return this.text;
  }

  equals(other: SpiffeId): boolean {
    return this.text === other.text;
  }
}

/** The reason `text` is not a valid SPIFFE ID, or undefined when it is. */
export function spiffeIdProblem(text: string): string | undefined {
  if (text.length === 0) return 'cannot be empty';
  if (Buffer.byteLength(text) > MAX_SPIFFE_ID_BYTES) return `is longer than ${MAX_SPIFFE_ID_BYTES} bytes`;
  if (!text.startsWith(SCHEME)) return 'scheme is missing or invalid';
  const rest = text.slice(SCHEME.length);
  // The trust domain ends at the path, or at a query or fragment (which are then reported).
  const end = rest.search(/[/?#]/);
  const tdProblem = trustDomainProblem(end < 0 ? rest : rest.slice(0, end));
  if (tdProblem) return tdProblem;
  if (end < 0) return undefined;
  if (rest[end] !== '/') return `${TD_CHARS} (a query or fragment is not allowed)`;
  return pathProblem(rest.slice(end));
}

/** Parse a SPIFFE ID (`spiffe://<trust-domain>[/<path>]`), or throw a SpiffeIdError saying why not. */
export function parseSpiffeId(text: string): SpiffeId {
  if (typeof text !== 'string') throw new SpiffeIdError('parse SPIFFE ID: not a string');
  const problem = spiffeIdProblem(text);
  if (problem) throw new SpiffeIdError(`parse SPIFFE ID ${JSON.stringify(clip(text))}: ${problem}`);
  const rest = text.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const td = TrustDomain.fromValidated(slash < 0 ? rest : rest.slice(0, slash));
  return SpiffeId.fromValidated(td, slash < 0 ? '' : rest.slice(slash));
}

/**
 * Parse a trust domain name (`example.org`) or a trust domain SPIFFE ID (`spiffe://example.org`).
 */
export function parseTrustDomain(text: string): TrustDomain {
  if (typeof text !== 'string') throw new SpiffeIdError('parse trust domain: not a string');
  if (text.startsWith(SCHEME)) {
    const id = parseSpiffeId(text);
    if (!id.isRoot) {
      throw new SpiffeIdError(
        `parse trust domain ${JSON.stringify(clip(text))}: a trust domain ID has no path`,
      );
    }
    return id.trustDomain;
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) {
    // A URI with another scheme (or `Spiffe://`): say so rather than complain about its characters.
    throw new SpiffeIdError(`parse trust domain ${JSON.stringify(clip(text))}: scheme is missing or invalid`);
  }
  if (text.includes('/'))
    throw new SpiffeIdError(`parse trust domain ${JSON.stringify(clip(text))}: ${TD_CHARS}`);
  const problem = trustDomainProblem(text);
  if (problem) throw new SpiffeIdError(`parse trust domain ${JSON.stringify(clip(text))}: ${problem}`);
  return TrustDomain.fromValidated(text);
}

/** The trust domain name of a SPIFFE ID string that is already known to be valid. */
export function trustDomainOf(spiffeId: string): string {
  return parseSpiffeId(spiffeId).trustDomain.name;
}

function clip(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}
