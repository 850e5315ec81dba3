import { join } from 'node:path';
import type { Cluster } from '../../demo/cluster.js';
import { run } from './netns.js';

interface BpftoolRow<K, V> {
  formatted?: { key: K; value: V };
}

/**
 * Every entry of one of a node's pinned BPF maps (`map`: its pin name, e.g. ma_ipcache), read with
 * `bpftool -j map dump pinned` and decoded through the map's BTF. Throws when bpftool gives no
 * BTF-formatted rows.
 */
export function dumpPinnedMap<K, V>(
  cluster: Cluster,
  node: string,
  map: string,
): Array<{ key: K; value: V }> {
  const rows = JSON.parse(
    run('bpftool', ['-j', 'map', 'dump', 'pinned', join(cluster.pinDir(node), map)]),
  ) as BpftoolRow<K, V>[];
  return rows.map((r) => {
    if (!r.formatted) throw new Error('bpftool: map dump without BTF formatting');
    return r.formatted;
  });
}
