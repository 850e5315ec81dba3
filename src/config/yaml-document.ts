import { parseDocument } from 'yaml';
import type * as z from 'zod';
import { fileErrorReason } from '../errors.js';
import { readInputFileSync } from '../read-file.js';
import { ConfigError } from './errors.js';
import { closestName, showValue } from './validate.js';

/** Path inside a document, as zod reports it. */
export type DocPath = ReadonlyArray<PropertyKey>;

/** "handshake.port", "datapath.attach[0].interface"; "(top level)" for the root. */
export function formatPath(path: DocPath): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? '(top level)' : out;
}

/**
 * Reads and parses a YAML file. Syntax errors (and duplicate keys) become a ConfigError
 * "<label>: line L, column C: <reason>". An empty file parses as an empty mapping.
 *
 * Only a regular file of at most MAX_INPUT_FILE_BYTES is read (symlinks followed): a FIFO, a
 * device such as /dev/zero or a larger file is refused with a ConfigError ("cannot read: not a
 * regular file (a FIFO)") instead of blocking the event loop, or reading for ever, in the
 * synchronous read. Files are re-read on change while the daemon runs (policy, inventory).
 */
export function readYamlFile(file: string, label: string, code?: string): unknown {
  let text: string;
  try {
    text = readInputFileSync(file).toString('utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : fileErrorReason(err);
    throw new ConfigError([`${label}: cannot read: ${reason}`], { cause: err, ...(code ? { code } : {}) });
  }
  return parseYamlText(text, label, code);
}

export function parseYamlText(text: string, label: string, code?: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, strict: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const where = pos ? `line ${pos.line}, column ${pos.col}` : 'YAML';
      // The yaml library appends the position and a source excerpt after the first line.
      const reason = (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '');
      return `${label}: ${where}: YAML syntax error: ${reason}`;
    });
    throw new ConfigError(problems, code ? { code } : undefined);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // The yaml library refuses alias expansion beyond maxAliasCount (a "billion laughs" document)
    // with a plain ReferenceError: report it like any other problem of the file.
    throw new ConfigError([`${label}: YAML: ${(err as Error).message}`], {
      cause: err,
      ...(code ? { code } : {}),
    });
  }
  return value === null || value === undefined ? {} : value;
}

interface ZodDefLike {
  type: string;
  shape?: Record<string, unknown>;
  innerType?: unknown;
  element?: unknown;
  in?: unknown;
  options?: unknown[];
}

function defOf(schema: unknown): ZodDefLike | undefined {
  return (schema as { _zod?: { def?: ZodDefLike } } | undefined)?._zod?.def;
}

/** Keys an object schema accepts at `path` (for "did you mean" hints). */
function knownKeysAt(schema: unknown, path: DocPath): string[] {
  let nodes: unknown[] = [schema];
  const unwrap = (list: unknown[]): unknown[] =>
    list.flatMap((s) => {
      const d = defOf(s);
      if (!d) return [];
      if (d.type === 'optional' || d.type === 'default' || d.type === 'prefault' || d.type === 'nullable')
        return unwrap([d.innerType]);
      if (d.type === 'pipe') return unwrap([d.in]);
      if (d.type === 'union') return unwrap(d.options ?? []);
      return [s];
    });
  for (const p of path) {
    nodes = unwrap(nodes).flatMap((s) => {
      const d = defOf(s) as ZodDefLike;
      if (d.type === 'object' && typeof p === 'string' && d.shape) return p in d.shape ? [d.shape[p]] : [];
      if (d.type === 'array' && typeof p === 'number') return [d.element];
      return [];
    });
  }
  return unwrap(nodes).flatMap((s) => {
    const d = defOf(s) as ZodDefLike;
    return d.type === 'object' && d.shape ? Object.keys(d.shape) : [];
  });
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
};

function describeIssue(issue: z.core.$ZodIssue, schema: unknown): Array<{ path: DocPath; reason: string }> {
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeysAt(schema, issue.path);
      return issue.keys.map((key) => {
        const hint = closestName(key, known);
        return {
          path: [...issue.path, key],
          reason: `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}`,
        };
      });
    }
    case 'invalid_type':
      if (input === undefined) return [{ path: issue.path, reason: 'is required' }];
      return [
        {
          path: issue.path,
          reason: `must be ${TYPE_NAMES[issue.expected] ?? issue.expected} (got ${showValue(input)})`,
        },
      ];
    case 'invalid_value':
      return [
        {
          path: issue.path,
          reason: `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')} (got ${showValue(input)})`,
        },
      ];
    case 'invalid_union': {
      const disc = (issue as { discriminator?: string }).discriminator;
      const options = (issue as { options?: unknown[] }).options;
      if (disc && options) {
        const got = input && typeof input === 'object' ? (input as Record<string, unknown>)[disc] : undefined;
        return [
          {
            path: issue.path,
            reason:
              got === undefined
                ? `is required (one of ${options.map((v) => JSON.stringify(v)).join(', ')})`
                : `must be one of ${options.map((v) => JSON.stringify(v)).join(', ')} (got ${showValue(got)})`,
          },
        ];
      }
      return [{ path: issue.path, reason: issue.message }];
    }
    case 'too_small':
      if (issue.origin === 'array')
        return [{ path: issue.path, reason: `must have at least ${issue.minimum} item(s)` }];
      if (issue.origin === 'string') return [{ path: issue.path, reason: 'must not be empty' }];
      return [{ path: issue.path, reason: issue.message }];
    default:
      return [{ path: issue.path, reason: issue.message }];
  }
}

/**
 * How a document reports problems of several settings together (issues whose params carry
 * `conflict`: the config paths involved): one line "<label>: conflict between <a> (<origin of a>)
 * and <b> (<origin of b>): <reason>", blaming no one source, since each value may come from
 * another (the file, the environment, a flag, a default).
 */
export interface ConflictReporting {
  label: string;
  /** Where a setting's value came from, e.g. "default", "flag --handshake-port". */
  originOf: (dottedPath: string) => string;
}

function conflictFields(issue: z.core.$ZodIssue): readonly string[] | undefined {
  if (issue.code !== 'custom') return undefined;
  const fields = (issue.params as { conflict?: unknown } | undefined)?.conflict;
  return Array.isArray(fields) && fields.every((f) => typeof f === 'string')
    ? (fields as string[])
    : undefined;
}

/** "a (x) and b (y)", "a (x), b (y) and c (z)". */
function listFields(fields: readonly string[], originOf: (f: string) => string): string {
  const parts = fields.map((f) => `${f} (${originOf(f)})`);
  return parts.length === 1 ? (parts[0] as string) : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}`;
}

/**
 * Validates a parsed document with a zod schema. Every problem becomes one line
 * "<source>: <path>: <reason>", where `sourceFor(path)` names where the value came from (the file,
 * an environment variable, a flag); a conflict between settings is worded as `conflicts` says
 * (default: on the first field's source, naming the others). Throws ConfigError listing all problems.
 */
export function validateDocument<S extends z.ZodType>(
  schema: S,
  data: unknown,
  sourceFor: (path: DocPath) => string,
  code?: string,
  conflicts?: ConflictReporting,
): z.output<S> {
  const result = schema.safeParse(data, { reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue) => {
    const fields = conflictFields(issue);
    if (fields) {
      if (conflicts)
        return [
          `${conflicts.label}: conflict between ${listFields(fields, conflicts.originOf)}: ${issue.message}`,
        ];
      return [
        `${sourceFor(issue.path)}: ${formatPath(issue.path)}: conflicts with ${fields.slice(1).join(', ')}: ${issue.message}`,
      ];
    }
    return describeIssue(issue, schema).map(
      ({ path, reason }) => `${sourceFor(path)}: ${formatPath(path)}: ${reason}`,
    );
  });
  throw new ConfigError([...new Set(problems)], code ? { code } : undefined);
}
