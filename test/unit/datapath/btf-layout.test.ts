import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { wire } from '../../../src/datapath/index.js';

/**
 * The compiled BPF object's own description of its maps (BTF, read with `bpftool btf dump`, no
 * privileges needed) against the TypeScript codecs: a struct changed on one side only fails here
 * instead of corrupting map entries at run time.
 */
const OBJECT = join(import.meta.dirname, '../../../bpf/meshauth.bpf.o');

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: Array<{ name: string; type_id: number }>;
  vars?: Array<{ type_id: number }>;
}

function loadBtf(): Map<number, BtfType> {
  if (!existsSync(OBJECT)) throw new Error(`${OBJECT} is missing: build it with make -C bpf`);
  const out = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', OBJECT], { encoding: 'utf8' });
  const { types } = JSON.parse(out) as { types: BtfType[] };
  return new Map(types.map((t) => [t.id, t]));
}

const btf = loadBtf();

function type(id: number | undefined): BtfType {
  const t = id === undefined ? undefined : btf.get(id);
  if (!t) throw new Error(`BTF type ${id} not found`);
  return t;
}

/** Follows typedefs and qualifiers to the type that has a size. */
function sizeOf(id: number): number {
  let t = type(id);
  while (['TYPEDEF', 'CONST', 'VOLATILE', 'RESTRICT', 'TYPE_TAG'].includes(t.kind)) t = type(t.type_id);
  if (t.kind === 'ARRAY') return sizeOf(t.type_id!) * t.nr_elems!;
  if (t.size === undefined) throw new Error(`BTF type ${t.id} (${t.kind}) has no size`);
  return t.size;
}

interface MapDef {
  type?: number;
  maxEntries?: number;
  keySize?: number;
  valueSize?: number;
}

/** The map definitions of the .maps section: libbpf's __uint (pointer to an array of N) and __type. */
function mapDefs(): Map<string, MapDef> {
  const section = [...btf.values()].find((t) => t.kind === 'DATASEC' && t.name === '.maps');
  if (!section?.vars) throw new Error('no .maps section in the BTF');
  const defs = new Map<string, MapDef>();
  for (const v of section.vars) {
    const variable = type(v.type_id);
    const def: MapDef = {};
    for (const m of type(variable.type_id).members ?? []) {
      const target = type(type(m.type_id).type_id); // every member is a pointer
      if (m.name === 'type') def.type = target.nr_elems!;
      else if (m.name === 'max_entries') def.maxEntries = target.nr_elems!;
      else if (m.name === 'key') def.keySize = sizeOf(target.id);
      else if (m.name === 'value') def.valueSize = sizeOf(target.id);
    }
    defs.set(variable.name!, def);
  }
  return defs;
}

function struct(name: string): number {
  const t = [...btf.values()].find((x) => x.kind === 'STRUCT' && x.name === name);
  if (!t) throw new Error(`struct ${name} not in the BTF`);
  return t.size!;
}

describe('BPF object layout against the TypeScript wire codecs', () => {
  const defs = mapDefs();

  it.each([
    ['ipcache', wire.MapType.LpmTrie, wire.ipcacheKey.size, wire.ipcacheValue.size],
    ['hosts', wire.MapType.Hash, wire.hostKey.size, wire.ipcacheValue.size],
    ['policy', wire.MapType.Hash, wire.policyKey.size, wire.policyValue.size],
    ['auth', wire.MapType.Hash, wire.authKey.size, wire.authValue.size],
    ['throttle', wire.MapType.LruHash, wire.authKey.size, wire.bootNsValue.size],
    ['counters', wire.MapType.PercpuArray, wire.u32Key.size, 8],
    ['config', wire.MapType.Array, wire.u32Key.size, wire.config.size],
    ['generation', wire.MapType.Array, wire.u32Key.size, wire.u64Value.size],
    ['flowCache', wire.MapType.PercpuArray, wire.u32Key.size, wire.flowCacheSlot.size],
  ] as const)('%s: type, key and value sizes, max entries', (map, mapType, keySize, valueSize) => {
    const spec = wire.MAPS[map];
    const def = defs.get(spec.name);
    expect(def, `${spec.name} in the object`).toBeDefined();
    expect(def).toEqual({ type: mapType, keySize, valueSize, maxEntries: spec.maxEntries });
  });

  it('signals: a ring buffer of the configured size', () => {
    // struct ma_signal travels as ring buffer bytes, so the object's BTF does not describe it;
    // test/integration/datapath reads real signals through the codec instead
    expect(defs.get(wire.MAPS.signals.name)).toEqual({
      type: wire.MapType.Ringbuf,
      maxEntries: wire.MAPS.signals.bytes,
    });
  });

  it('names every map of the object', () => {
    expect([...defs.keys()].sort()).toEqual(
      Object.values(wire.MAPS)
        .map((m) => m.name)
        .sort(),
    );
  });

  it('keeps the struct sizes the codecs assume', () => {
    expect(struct('ma_ipcache_key')).toBe(wire.ipcacheKey.size);
    expect(struct('ma_ipcache_value')).toBe(wire.ipcacheValue.size);
    expect(struct('ma_host_key')).toBe(wire.hostKey.size);
    expect(struct('ma_auth_key')).toBe(wire.authKey.size);
    expect(struct('ma_auth_value')).toBe(wire.authValue.size);
    expect(struct('ma_policy_key')).toBe(wire.policyKey.size);
    expect(struct('ma_policy_value')).toBe(wire.policyValue.size);
    expect(struct('ma_config')).toBe(wire.config.size);
    expect(struct('ma_flow_cache_slot')).toBe(wire.flowCacheSlot.size);
    expect(struct('ma_flow_key')).toBe(40);
  });
});
