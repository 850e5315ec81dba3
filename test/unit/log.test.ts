import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, oneValuePerKey, silentLogger } from '../../src/log.js';

/** Keys of every JSON object in `text`, in order of appearance, per object (a small JSON scanner). */
function keysPerObject(text: string): string[][] {
  const objects: string[][] = [];
  const stack: Array<{ keys: string[] } | 'array'> = [];
  let i = 0;
  const readString = (): string => {
    let s = '';
    i++; // opening quote
    while (text[i] !== '"') {
      if (text[i] === '\\') {
        s += text.slice(i, i + 2);
        i += 2;
      } else s += text[i++];
    }
    i++;
    return s;
  };
  let expectKey = false;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === '{') {
      stack.push({ keys: [] });
      expectKey = true;
      i++;
    } else if (c === '[') {
      stack.push('array');
      expectKey = false;
      i++;
    } else if (c === '}' || c === ']') {
      const top = stack.pop();
      if (top !== undefined && top !== 'array') objects.push(top.keys);
      i++;
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] !== 'array';
      i++;
    } else if (c === '"') {
      const s = readString();
      const top = stack[stack.length - 1];
      if (expectKey && top !== undefined && top !== 'array') top.keys.push(s);
      expectKey = false;
    } else i++;
  }
  return objects;
}

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        lines.push(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
      done();
    },
  });
  return { lines, stream };
}

function duplicates(keys: readonly string[]): string[] {
  return keys.filter((k, i) => keys.indexOf(k) !== i);
}

describe('log lines', () => {
  it('the scanner finds a repeated key (so the checks below can fail)', () => {
    expect(keysPerObject('{"a":1,"component":"x","b":{"c":[{"d":1}]},"component":"y"}')).toEqual([
      ['d'],
      ['c'],
      ['a', 'component', 'b', 'component'],
    ]);
  });

  it('a child logger of the daemon logger writes one component key: the innermost', () => {
    const { lines, stream } = capture();
    const root = createLogger({ name: 'meshauthd', level: 'info', destination: stream });
    const datapath = root.child({ component: 'datapath' });
    datapath.info({ event: 'attached', node: 'n1' }, 'datapath attached');
    datapath.child({ component: 'gc' }).warn({ event: 'gc_slow', duration_ms: 12 }, 'slow');
    root.info({ component: 'daemon', event: 'state_resynced' }, 'inventory changed');
    root.info({ event: 'ready' }, 'ready');
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      for (const keys of keysPerObject(line)) expect(duplicates(keys)).toEqual([]);
    }
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.map((p) => p['component'])).toEqual(['datapath', 'gc', 'daemon', 'meshauthd']);
    expect(parsed[0]).toMatchObject({ level: 30, event: 'attached', node: 'n1', msg: 'datapath attached' });
    expect(parsed[1]).toMatchObject({ level: 40, event: 'gc_slow', duration_ms: 12 });
    expect(typeof parsed[0]?.['time']).toBe('string');
  });

  it('keeps errors serialized once, with their fields', () => {
    const { lines, stream } = capture();
    const log = createLogger({ name: 'meshauthd', destination: stream }).child({ component: 'api' });
    log.error({ err: Object.assign(new Error('boom'), { code: 'E_X' }), event: 'failed' }, 'failed');
    expect(lines).toHaveLength(1);
    for (const keys of keysPerObject(lines[0]!)) expect(duplicates(keys)).toEqual([]);
    const p = JSON.parse(lines[0]!) as { err: { message: string; code: string; stack: string } };
    expect(p.err.message).toBe('boom');
    expect(p.err.code).toBe('E_X');
    expect(p.err.stack).toContain('Error: boom');
  });

  it('passes a line that is not JSON through and keeps the newline', () => {
    expect(oneValuePerKey('not json\n')).toBe('not json\n');
    expect(oneValuePerKey('{"a":1,"a":2}\n')).toBe('{"a":2}\n');
    expect(oneValuePerKey('{"a":1,"b":{"c":1,"c":"x"}}')).toBe('{"a":1,"b":{"c":"x"}}');
  });
});

describe('silentLogger', () => {
  // Regression (fuzz, ring-buffer target): a pino instance per call retained its stdout stream,
  // about 1.4 KiB each, so components defaulting to it leaked per object.
  it('is one shared instance that writes nothing', () => {
    const a = silentLogger();
    expect(silentLogger()).toBe(a);
    expect(a.isLevelEnabled('fatal')).toBe(false);
    expect(a.child({ component: 'x' }).isLevelEnabled('fatal')).toBe(false);
  });
});

describe('log event names', () => {
  it('are snake_case in every source file (the field name operators filter on)', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const root = join(import.meta.dirname, '..', '..', 'src');
    const names: Array<{ file: string; name: string }> = [];
    for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
      const file = join(entry.parentPath, entry.name);
      const text = readFileSync(file, 'utf8');
      // `event: 'name'` and `event: cond ? 'a' : 'b'` in a log call's fields
      for (const m of text.matchAll(/\bevent:\s*([^,}\n]*)/g))
        for (const s of m[1]!.matchAll(/'([^']*)'|"([^"]*)"|`([^`]*)`/g))
          names.push({ file: file.slice(root.length + 1), name: s[1] ?? s[2] ?? s[3]! });
    }
    // the scan finds the log events (about 180), so a broken pattern cannot pass by finding none
    expect(names.length).toBeGreaterThan(150);
    expect(names.filter((n) => !/^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/.test(n.name))).toEqual([]);
  });
});
