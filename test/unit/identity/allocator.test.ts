import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AllocatorError, IdAllocator, openStateAllocators } from '../../../src/identity/index.js';

const root = mkdtempSync(join(tmpdir(), 'meshauth-alloc-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshFile = (): string => join(root, `d${n++}`, 'identities.json');

const WEB = 'spiffe://demo.local/ns/demo/sa/web';
const API = 'spiffe://demo.local/ns/demo/sa/api';
const DB = 'spiffe://demo.local/ns/demo/sa/db';

describe('IdAllocator', () => {
  it('allocates from 1, is idempotent and answers both ways', () => {
    const a = IdAllocator.open({ file: freshFile(), namespace: 'spiffe-id' });
    expect(a.idFor(WEB)).toBe(1);
    expect(a.idFor(API)).toBe(2);
    expect(a.idFor(WEB)).toBe(1);
    expect(a.lookup(API)).toBe(2);
    expect(a.lookup(DB)).toBeUndefined();
    expect(a.keyFor(1)).toBe(WEB);
    expect(a.keyFor(0)).toBeUndefined();
    expect(a.size).toBe(2);
    expect(a.idsFor([DB, WEB])).toEqual([3, 1]);
  });

  it('survives a restart with the same numbers', () => {
    const file = freshFile();
    const a = IdAllocator.open({ file, namespace: 'spiffe-id' });
    a.idsFor([WEB, API, DB]);
    const b = IdAllocator.open({ file, namespace: 'spiffe-id' });
    expect(b.entries()).toEqual([
      [WEB, 1],
      [API, 2],
      [DB, 3],
    ]);
    expect(b.idFor('spiffe://demo.local/x')).toBe(4);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('does not hand a released handle to a new key while fresh ones remain', () => {
    const file = freshFile();
    const a = IdAllocator.open({ file, namespace: 'spiffe-id' });
    a.idsFor([WEB, API]);
    expect(a.release(WEB)).toBe(1);
    expect(a.release(WEB)).toBeUndefined();
    expect(a.lookup(WEB)).toBeUndefined();
    expect(a.keyFor(1)).toBeUndefined();
    expect(a.idFor(DB)).toBe(3);
    // The release and the high-water mark are persisted.
    const b = IdAllocator.open({ file, namespace: 'spiffe-id' });
    expect(b.lookup(WEB)).toBeUndefined();
    expect(b.idFor(WEB)).toBe(4);
  });

  it('reuses released handles only when the space is exhausted', () => {
    const a = IdAllocator.open({ file: freshFile(), namespace: 'node', maxId: 3 });
    expect(a.idsFor(['a', 'b', 'c'])).toEqual([1, 2, 3]);
    expect(() => a.idFor('d')).toThrow(AllocatorError);
    expect(a.retainOnly(['a', 'c'])).toEqual([['b', 2]]);
    expect(a.idFor('d')).toBe(2);
  });

  it('writes atomically: no temporary files left, content always complete JSON', () => {
    const file = freshFile();
    const a = IdAllocator.open({ file, namespace: 'spiffe-id' });
    for (let i = 0; i < 50; i++) {
      a.idFor(`spiffe://demo.local/w/${i}`);
      const parsed = JSON.parse(readFileSync(file, 'utf8')) as { ids: Record<string, number>; next: number };
      expect(Object.keys(parsed.ids)).toHaveLength(i + 1);
      expect(parsed.next).toBe(i + 2);
    }
    expect(readdirSync(join(file, '..'))).toEqual(['identities.json']);
  });

  it('creates nothing until something is allocated', () => {
    const file = freshFile();
    const a = IdAllocator.open({ file, namespace: 'spiffe-id' });
    expect(a.lookup(WEB)).toBeUndefined();
    expect(existsSync(file)).toBe(false);
  });

  const corrupt: Array<[string, string, RegExp]> = [
    ['truncated JSON', '{"version":1,"namespace":"spiffe-id","next":3,"ids":{"a":1', /not valid JSON/],
    ['empty file', '', /not valid JSON/],
    [
      'wrong version',
      '{"version":2,"namespace":"spiffe-id","next":1,"released":[],"ids":{}}',
      /unsupported version 2/,
    ],
    [
      'other namespace',
      '{"version":1,"namespace":"node","next":1,"released":[],"ids":{}}',
      /holds "node" handles, expected "spiffe-id"/,
    ],
    [
      'duplicate handle',
      '{"version":1,"namespace":"spiffe-id","next":3,"released":[],"ids":{"a":1,"b":1}}',
      /handle 1 is held by both "a" and "b"/,
    ],
    [
      'handle zero',
      '{"version":1,"namespace":"spiffe-id","next":3,"released":[],"ids":{"a":0}}',
      /bad handle 0 for "a"/,
    ],
    [
      'handle above next',
      '{"version":1,"namespace":"spiffe-id","next":2,"released":[],"ids":{"a":5}}',
      /handle 5 of "a" is not below "next" \(2\)/,
    ],
    [
      'released in use',
      '{"version":1,"namespace":"spiffe-id","next":3,"released":[1],"ids":{"a":1}}',
      /released handle 1 is in use/,
    ],
    ['not an object', '[1,2]', /not a JSON object/],
  ];
  it.each(corrupt)('refuses a corrupted file: %s', (_name, content, reason) => {
    const file = freshFile();
    IdAllocator.open({ file, namespace: 'spiffe-id' }).idFor('x'); // creates the directory
    writeFileSync(file, content);
    let err: unknown;
    try {
      IdAllocator.open({ file, namespace: 'spiffe-id' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AllocatorError);
    expect((err as AllocatorError).code).toBe('MESHAUTH_ERR_ALLOCATOR');
    expect((err as Error).message).toMatch(new RegExp(`^load id allocator ${file}: `));
    expect((err as Error).message).toMatch(reason);
    expect((err as Error).message).toMatch(/refusing to renumber/);
    // The file is left as it was for the operator to inspect.
    expect(readFileSync(file, 'utf8')).toBe(content);
  });

  it('opens the two state allocators in separate files that cannot be swapped', () => {
    const stateDir = join(root, `state${n++}`);
    const { identities, nodes } = openStateAllocators(stateDir);
    expect(identities.idFor(WEB)).toBe(1);
    expect(nodes.idFor('node-b')).toBe(1);
    expect(readdirSync(stateDir).sort()).toEqual(['identities.json', 'nodes.json']);
    expect(() => IdAllocator.open({ file: join(stateDir, 'nodes.json'), namespace: 'spiffe-id' })).toThrow(
      /holds "node" handles, expected "spiffe-id"/,
    );
    expect(openStateAllocators(stateDir).identities.lookup(WEB)).toBe(1);
  });
});
