import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Closers } from '../../../src/daemon/closers.js';

describe('Closers', () => {
  it('closes in reverse opening order, once, and keeps going past a closer that fails', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    const closers = new Closers(pino({ base: null }, stream));
    const closed: string[] = [];
    closers.push('audit', () => void closed.push('audit'));
    closers.push('datapath', () => {
      closed.push('datapath');
      throw new Error('EBADF');
    });
    closers.push('server', async () => {
      await Promise.resolve();
      closed.push('server');
    });
    expect(closers.size).toBe(3);
    await closers.closeAll();
    expect(closed).toEqual(['server', 'datapath', 'audit']);
    expect(closers.size).toBe(0);
    await closers.closeAll();
    expect(closed).toHaveLength(3);
    await new Promise((r) => setImmediate(r));
    expect(lines).toEqual([
      expect.objectContaining({
        event: 'shutdown_step_failed',
        step: 'datapath',
        err: expect.objectContaining({ message: 'EBADF' }),
      }),
    ]);
  });
});
