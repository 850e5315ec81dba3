import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { detectKernelHz, parseConfigHz, FALLBACK_HZ } from '../../../src/datapath/index.js';

const CONFIG_1000 = '# CONFIG_HZ_250 is not set\nCONFIG_HZ_1000=y\nCONFIG_HZ=1000\nCONFIG_SCHED_HRTICK=y\n';
const CONFIG_300 = 'CONFIG_HZ_300=y\nCONFIG_HZ=300\n';

function files(map: Record<string, Buffer>): (path: string) => Buffer {
  return (path) => {
    const b = map[path];
    if (!b) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return b;
  };
}

describe('CONFIG_HZ detection', () => {
  it('parses CONFIG_HZ and ignores the CONFIG_HZ_<n> choice lines', () => {
    expect(parseConfigHz(CONFIG_1000)).toBe(1000);
    expect(parseConfigHz('CONFIG_HZ_100=y\nCONFIG_HZ=100')).toBe(100);
    expect(parseConfigHz('CONFIG_HZ_250=y\n')).toBeUndefined();
    expect(parseConfigHz('CONFIG_HZ=0\n')).toBeUndefined();
  });

  it('prefers /boot/config-<release>', () => {
    const r = detectKernelHz({
      release: '6.1.0-test',
      readFile: files({
        '/boot/config-6.1.0-test': Buffer.from(CONFIG_1000),
        '/proc/config.gz': gzipSync(CONFIG_300),
      }),
    });
    expect(r).toEqual({ hz: 1000, source: '/boot/config-6.1.0-test' });
  });

  it('falls back to /proc/config.gz when the /boot file is missing or has no CONFIG_HZ', () => {
    expect(
      detectKernelHz({ release: 'x', readFile: files({ '/proc/config.gz': gzipSync(CONFIG_300) }) }),
    ).toEqual({
      hz: 300,
      source: '/proc/config.gz',
    });
    expect(
      detectKernelHz({
        release: 'x',
        readFile: files({
          '/boot/config-x': Buffer.from('# empty\n'),
          '/proc/config.gz': gzipSync(CONFIG_300),
        }),
      }).hz,
    ).toBe(300);
  });

  it('falls back to 250 when nothing can be read or /proc/config.gz is not gzip', () => {
    expect(detectKernelHz({ release: 'x', readFile: files({}) })).toEqual({
      hz: FALLBACK_HZ,
      source: 'fallback',
    });
    expect(
      detectKernelHz({ release: 'x', readFile: files({ '/proc/config.gz': Buffer.from(CONFIG_300) }) }),
    ).toEqual({
      hz: 250,
      source: 'fallback',
    });
  });
});
