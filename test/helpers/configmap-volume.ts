import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A directory laid out as the kubelet lays out a ConfigMap volume: `name` -> `..data/name`,
 * `..data` -> a timestamped directory. `update` swaps `..data` atomically as the kubelet does
 * (new directory, `..data_tmp` symlink renamed over `..data`, old directory removed).
 */
export function configMapVolume(root: string, name: string, text: string) {
  mkdirSync(root);
  let gen = 0;
  const writeGen = (t: string): string => {
    const d = `..2026_12_01_00_00_0${gen++}.000000001`;
    mkdirSync(join(root, d));
    writeFileSync(join(root, d, name), t);
    return d;
  };
  let current = writeGen(text);
  symlinkSync(current, join(root, '..data'));
  symlinkSync(join('..data', name), join(root, name));
  return {
    file: join(root, name),
    update(t: string): void {
      const next = writeGen(t);
      symlinkSync(next, join(root, '..data_tmp'));
      renameSync(join(root, '..data_tmp'), join(root, '..data'));
      rmSync(join(root, current), { recursive: true });
      current = next;
    },
  };
}
