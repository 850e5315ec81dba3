/**
 * The datapath facade: loads bpf/meshauth.bpf.o with its maps pinned under a bpffs directory and
 * exposes the maps as domain operations (ipcache, policy, auth map, settings, counters), the
 * attachments, and the signal stream. close() keeps pins and attachments: enforcement continues
 * while the daemon is away.
 */
import { randomFillSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { ClosedError } from '../errors.js';
import {
  attachCgroupProgram,
  attachSockOpsProgram,
  attachTcProgram,
  detachCgroupProgram,
  detachSockOpsProgram,
  detachTcProgram,
  mapIdOf,
  querySockOpsPrograms,
  queryTcProgram,
  type CgroupHookPoint,
  type ProgramInfo,
  type SockOpsAttachResult,
  type TcHookPoint,
} from './attach.js';
import { BpfObject } from './bpf-object.js';
import { removePinFiles } from './bpffs.js';
import { kernelHz } from './kernel-hz.js';
import { bootNsToWallMs, wallMsToBootNs, systemClocks, type Clocks } from './clock.js';
import { BpfMap, numPossibleCpus } from './map.js';
import { RingBufSignalSource } from './signals.js';
import { testRun, type TestRunOptions, type TestRunResult } from './test-run.js';
import type {
  AuthKey,
  AuthMap,
  AuthValue,
  DatapathSettings,
  IpcacheEntry,
  PolicyKey,
  PolicyMode,
  VerdictCounters,
} from './types.js';
import {
  authKey,
  authValue,
  flowCacheSlot,
  u64Value,
  config as configCodec,
  DEFAULT_HZ,
  DEFAULT_SYN_RTO_MS,
  FLAG_STRICT_WIREGUARD,
  FLOW_CACHE_PROGRAMS,
  flowCacheIndex,
  hostKey,
  ipcacheKey,
  ipcacheValue,
  MAPS,
  PROGRAMS,
  policyKey,
  policyValue,
  u32Key,
  VERDICT_NAMES,
  type Codec,
  type WireConfig,
  type WireFlowCacheSlot,
  type WireFlowKey,
} from './wire.js';
import { parseCidr, formatCidr } from './cidr.js';

export type Semantics = 'egress' | 'ingress';

export const DEFAULT_SETTINGS: DatapathSettings = {
  signalThrottleMs: 250,
  wireguardIfindex: 0,
  strictWireguard: false,
  synRtoMs: DEFAULT_SYN_RTO_MS,
};

/** Bounds of DatapathSettings.synRtoMs (the kernel's own initial SYN RTO is 1000 ms). */
export const SYN_RTO_MS_MIN = 1;
export const SYN_RTO_MS_MAX = 1000;

export interface DatapathOptions {
  /** bpf/meshauth.bpf.o */
  objectPath: string;
  /** bpffs directory of the pins, e.g. /sys/fs/bpf/meshauth. */
  pinDir: string;
  /** Written to the config map when given; otherwise the pinned settings stay as they are. */
  settings?: DatapathSettings;
  logger?: Logger;
  /** Clock source for expiry conversion (tests). */
  clocks?: Clocks;
  /** Map sizes other than the object's defaults (MAPS); see MapSizes. */
  mapSizes?: MapSizes;
}

/**
 * Sizes of the maps that grow with the cluster (datapath.maps in the configuration); each
 * defaults to the size compiled into bpf/meshauth.bpf.o (MAPS). A change against maps pinned with
 * other sizes makes Datapath.open throw PinMismatchError (the daemon then recreates the pins:
 * live entries are lost and pairs re-authenticate).
 */
export interface MapSizes {
  /** Auth map entries (authenticated pairs, both directions of each handshake counted once per node). */
  auth?: number;
  /** ipcache prefixes (pod addresses and CIDRs); also the size of the exact-match host map. */
  ipcache?: number;
  /** Policy entries (identity pairs with a rule). */
  policy?: number;
  /** Signal throttle slots (pairs signalled within one throttle window). */
  throttle?: number;
  /** Signal ring buffer, bytes: a power of two, at least the page size. */
  signalRingBytes?: number;
}

/** MapSizes as BpfObject max_entries by map name. */
export function mapMaxEntries(s: MapSizes | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (s?.auth !== undefined) out[MAPS.auth.name] = s.auth;
  if (s?.ipcache !== undefined) {
    // ma_hosts holds the host (/32, /128) entries of the ipcache: it needs the same room.
    out[MAPS.ipcache.name] = s.ipcache;
    out[MAPS.hosts.name] = s.ipcache;
  }
  if (s?.policy !== undefined) out[MAPS.policy.name] = s.policy;
  if (s?.throttle !== undefined) out[MAPS.throttle.name] = s.throttle;
  if (s?.signalRingBytes !== undefined) out[MAPS.signals.name] = s.signalRingBytes;
  return out;
}

export interface PolicyEntry extends PolicyKey {
  authType: number;
  /** Default "enforce". */
  mode?: PolicyMode;
}

export interface SyncResult {
  added: number;
  updated: number;
  removed: number;
}

/**
 * A change of the ipcache and policy maps, entry by entry. applyDelta writes policy upserts first,
 * then ipcache removals, ipcache upserts, and policy removals last, so that no address ever maps
 * to an identity whose policy entries are not written yet (that would pass as pass_no_policy).
 * A prefix both removed and upserted is only upserted (replaced in place, no gap).
 */
export interface DatapathDelta {
  ipcacheUpsert?: readonly IpcacheEntry[];
  /** Prefixes to remove (any textual form). */
  ipcacheRemove?: readonly string[];
  policyUpsert?: readonly PolicyEntry[];
  policyRemove?: readonly PolicyKey[];
}

export interface DeltaResult {
  ipcache: SyncResult;
  policy: SyncResult;
}

/** The per-CPU values of one ma_flow_cache slot, by CPU. */
function perCpuSlots(cpus: number): Codec<WireFlowCacheSlot[]> {
  const size = flowCacheSlot.size;
  return {
    size: size * cpus,
    encode(v: WireFlowCacheSlot[]): Buffer {
      return Buffer.concat(v.map((s) => flowCacheSlot.encode(s)));
    },
    decode(b: Buffer, o = 0): WireFlowCacheSlot[] {
      return Array.from({ length: cpus }, (_x, i) => flowCacheSlot.decode(b, o + i * size));
    },
  };
}

/** Sums a per-CPU u64 value. */
function perCpuSum(cpus: number): Codec<bigint> {
  return {
    size: 8 * cpus,
    encode(v: bigint): Buffer {
      const b = Buffer.alloc(8 * cpus);
      b.writeBigUInt64LE(v, 0);
      return b;
    },
    decode(b: Buffer, o = 0): bigint {
      let s = 0n;
      for (let i = 0; i < cpus; i++) s += b.readBigUInt64LE(o + i * 8);
      return s;
    },
  };
}

/**
 * Whether this CPU architecture keeps the verdict cache correct: x86-64 only (TSO; see the
 * ma_flow_cache comment in bpf/meshauth.bpf.c). Elsewhere the generation stays 0, which turns the
 * cache off: every packet takes the full lookups.
 */
export const VERDICT_CACHE_SUPPORTED = process.arch === 'x64';

/**
 * The kernel auth map with wall-clock expiry (AuthMap of src/datapath/types.ts). Every write and
 * delete calls `changed` once it returned (the datapath's new map generation).
 */
export class KernelAuthMap implements AuthMap {
  constructor(
    private readonly map: BpfMap<AuthKey, { expiryBootNs: bigint }>,
    private readonly clocks: Clocks,
    private readonly changed: () => void,
  ) {}

  lookup(key: AuthKey): AuthValue | undefined {
    const v = this.map.get(key);
    return v === undefined ? undefined : { expiresAtMs: bootNsToWallMs(v.expiryBootNs, this.clocks) };
  }

  /** Raw kernel expiry (CLOCK_BOOTTIME ns). */
  lookupBootNs(key: AuthKey): bigint | undefined {
    return this.map.get(key)?.expiryBootNs;
  }

  update(key: AuthKey, value: AuthValue): void {
    this.updateBootNs(key, wallMsToBootNs(value.expiresAtMs, this.clocks));
  }

  /** Writes a raw kernel expiry (CLOCK_BOOTTIME ns). */
  updateBootNs(key: AuthKey, expiryBootNs: bigint): void {
    try {
      this.map.update(key, { expiryBootNs });
    } finally {
      this.changed();
    }
  }

  delete(key: AuthKey): boolean {
    try {
      return this.map.tryDelete(key);
    } finally {
      this.changed();
    }
  }

  /** CLOCK_BOOTTIME in ms: the clock bpf_ktime_get_boot_ns() reads in the datapath. */
  clockNowMs(): number {
    return Number(this.clocks.bootNowNs()) / 1e6;
  }

  expiryClockMs(key: AuthKey): number | undefined {
    const v = this.map.get(key);
    return v === undefined ? undefined : Number(v.expiryBootNs) / 1e6;
  }

  // Batched reads: a walk key by key costs a get_next_key and a lookup per entry, which at 100,000
  // entries held the event loop for seconds; BPF_MAP_LOOKUP_BATCH reads 256 entries a call.
  *entries(): Iterable<[AuthKey, AuthValue]> {
    for (const [k, v] of this.map.lookupBatch())
      yield [k, { expiresAtMs: bootNsToWallMs(v.expiryBootNs, this.clocks) }];
  }

  *expiriesClockMs(): Iterable<[AuthKey, number]> {
    for (const [k, v] of this.map.lookupBatch()) yield [k, Number(v.expiryBootNs) / 1e6];
  }
}

export class Datapath {
  readonly pinDir: string;
  readonly auth: KernelAuthMap;
  private obj: BpfObject | undefined;
  private readonly ipcache: BpfMap<string, { identity: number; nodeId: number }>;
  /** The host entries of `ipcache` again, exact-match (see bpf/meshauth.bpf.c ma_hosts). */
  private readonly hosts: BpfMap<string, { identity: number; nodeId: number }>;
  private readonly policy: BpfMap<PolicyKey, { authType: number; mode: PolicyMode }>;
  private readonly throttle: BpfMap<AuthKey, bigint>;
  private readonly countersMap: BpfMap<number, bigint>;
  private readonly configMap: BpfMap<number, WireConfig>;
  private readonly authRaw: BpfMap<AuthKey, { expiryBootNs: bigint }>;
  private readonly generationMap: BpfMap<number, bigint>;
  private readonly flowCacheMap: BpfMap<number, WireFlowCacheSlot[]>;
  private readonly generationBuf = Buffer.alloc(8);
  private readonly sources = new Set<RingBufSignalSource>();
  private readonly log: Logger | undefined;
  private fullSyncCount = 0;

  private constructor(obj: BpfObject, opts: DatapathOptions) {
    this.obj = obj;
    this.pinDir = opts.pinDir;
    this.log = opts.logger;
    this.ipcache = obj.map(MAPS.ipcache.name, ipcacheKey, ipcacheValue);
    this.hosts = obj.map(MAPS.hosts.name, hostKey, ipcacheValue);
    this.policy = obj.map(MAPS.policy.name, policyKey, policyValue);
    this.authRaw = obj.map(MAPS.auth.name, authKey, authValue);
    this.throttle = obj.map(MAPS.throttle.name, authKey, {
      size: 8,
      encode: (v: bigint) => {
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(v);
        return b;
      },
      decode: (b: Buffer, o = 0) => b.readBigUInt64LE(o),
    });
    this.countersMap = obj.map(MAPS.counters.name, u32Key, perCpuSum(numPossibleCpus()));
    this.configMap = obj.map(MAPS.config.name, u32Key, configCodec);
    this.generationMap = obj.map(MAPS.generation.name, u32Key, u64Value);
    this.flowCacheMap = obj.map(MAPS.flowCache.name, u32Key, perCpuSlots(numPossibleCpus()));
    this.auth = new KernelAuthMap(this.authRaw, opts.clocks ?? systemClocks, () => this.bumpGeneration());
  }

  /** Loads the object, reusing maps pinned in pinDir (creating and pinning the missing ones). */
  static open(opts: DatapathOptions): Datapath {
    const obj = BpfObject.load(opts.objectPath, {
      pinDir: opts.pinDir,
      maxEntries: mapMaxEntries(opts.mapSizes),
    });
    try {
      const dp = new Datapath(obj, opts);
      // A fresh generation: slots written under an earlier one (another build, another process's
      // writes) never hit, and the cache is on (x86-64) or off from here.
      dp.bumpGeneration();
      // ma_hosts is created empty on an upgrade (safe: a missing host entry falls back to the trie)
      // and may be stale after a build without it wrote the trie; either way, derive it afresh.
      const hosts = dp.reconcileHosts();
      if (hosts.added + hosts.updated + hosts.removed > 0) {
        opts.logger?.info({ event: 'hosts_reconciled', hosts }, 'host map rebuilt from the ipcache');
      }
      if (opts.settings) dp.setSettings(opts.settings);
      opts.logger?.info(
        { event: 'datapath_loaded', pin_dir: opts.pinDir, object: opts.objectPath },
        'datapath loaded',
      );
      return dp;
    } catch (err) {
      obj.close();
      throw err;
    }
  }

  /**
   * Re-creates pins removed from bpffs while this datapath holds the maps (BpfObject.repinMissing).
   * Returns the names of the maps re-pinned (empty when every pin is in place).
   */
  repinMissing(): string[] {
    return this.object('re-pin maps').repinMissing();
  }

  /** Removes meshauth's pins from pinDir (uninstall, tests). Attached programs keep running until detached. */
  /** Whether pinDir holds any of meshauth's pinned maps (a daemon ran here before). */
  static hasPins(pinDir: string): boolean {
    return Object.values(MAPS).some((m) => existsSync(join(pinDir, m.name)));
  }

  static removePins(pinDir: string): void {
    removePinFiles(
      pinDir,
      Object.values(MAPS).map((m) => m.name),
    );
  }

  private object(op: string): BpfObject {
    if (!this.obj) throw new ClosedError(`datapath ${op}`);
    return this.obj;
  }

  // ---- ipcache ----
  //
  // Every host entry (/128, IPv4 /32) lives in two maps: the LPM trie ma_ipcache and the
  // exact-match hash ma_hosts that the programs try first. Writes go to the trie first and
  // removals to the hash first, so that at any moment a hash entry is also the trie's entry for
  // that address (or the previous value of an entry being replaced): the programs' verdicts are
  // those of the trie alone.

  private static isHost(cidr: string): boolean {
    return parseCidr(cidr).prefixlen === 128;
  }

  private writeIpcache(cidr: string, v: { identity: number; nodeId: number }): void {
    this.ipcache.update(cidr, v);
    if (Datapath.isHost(cidr)) this.hosts.update(cidr, v);
  }

  // ---- map generation (verdict cache) ----
  //
  // The programs keep the last authenticated flow's verdict per CPU (ma_flow_cache) stamped with
  // the generation in ma_generation, read before their lookups. Every method here that writes or
  // deletes entries of ma_ipcache, ma_hosts, ma_policy, ma_auth or ma_config writes a new
  // generation after the last write returned and before it returns itself (also when a write
  // throws): from then on no packet is passed on a verdict computed before the change.

  /**
   * Writes a fresh random non-zero generation (0 on architectures without the ordering the cache
   * relies on: VERDICT_CACHE_SUPPORTED). Random rather than counted, so that writers in several
   * processes need no atomic read-modify-write. Public for tools that write the pinned maps by
   * other means; the methods of this class call it themselves.
   */
  bumpGeneration(): void {
    this.object('bump generation');
    let g = 0n;
    if (VERDICT_CACHE_SUPPORTED) {
      while (g === 0n) g = randomFillSync(this.generationBuf).readBigUInt64LE(0);
    }
    this.generationMap.update(0, g);
  }

  /** The current map generation (0: verdict cache off). */
  generation(): bigint {
    this.object('read generation');
    return this.generationMap.lookup(0);
  }

  /**
   * The verdict-cache slot that a flow of an skb program maps to, on every possible CPU (array
   * index = CPU number), for inspection and tests. The slot may hold another flow (key).
   */
  flowCache(program: keyof typeof FLOW_CACHE_PROGRAMS, flow: WireFlowKey): WireFlowCacheSlot[] {
    this.object('read flow cache');
    return this.flowCacheMap.lookup(flowCacheIndex(program, flow));
  }

  /** Runs `write` and writes a new generation afterwards, whether or not it threw. */
  private changing<T>(write: () => T): T {
    try {
      return write();
    } finally {
      this.bumpGeneration();
    }
  }

  private removeIpcache(cidr: string): boolean {
    if (Datapath.isHost(cidr)) this.hosts.tryDelete(cidr);
    return this.ipcache.tryDelete(cidr);
  }

  /** Inserts or replaces the prefix → (identity, node) entry. */
  upsertIpcache(e: IpcacheEntry): void {
    this.object('upsert ipcache');
    this.changing(() => this.writeIpcache(e.cidr, { identity: e.identity, nodeId: e.nodeId }));
  }

  /**
   * What the kernel finds for an address: the longest-prefix match of the LPM trie (so an address
   * without its own entry returns its pod CIDR's entry). `cidr` in the result is the address asked.
   */
  lookupIpcache(address: string): IpcacheEntry | undefined {
    this.object('lookup ipcache');
    const v = this.ipcache.get(address);
    return v ? { cidr: formatCidr(parseCidr(address)), identity: v.identity, nodeId: v.nodeId } : undefined;
  }

  /** Returns false when the prefix was not present. */
  deleteIpcache(cidr: string): boolean {
    this.object('delete ipcache');
    return this.changing(() => this.removeIpcache(cidr));
  }

  listIpcache(): IpcacheEntry[] {
    this.object('list ipcache');
    return [...this.ipcache.entries()].map(([cidr, v]) => ({ cidr, identity: v.identity, nodeId: v.nodeId }));
  }

  /** The exact-match host map ma_hosts (canonical "a.b.c.d/32" and "x::y/128" keys). */
  listHosts(): IpcacheEntry[] {
    this.object('list hosts');
    return [...this.hosts.entries()].map(([cidr, v]) => ({ cidr, identity: v.identity, nodeId: v.nodeId }));
  }

  /**
   * Makes ma_hosts equal to the host entries of the LPM trie (open() does this; syncIpcache and
   * applyDelta keep them equal afterwards). Like every write here it assumes one writer of the
   * pinned maps (meshauthd): run concurrently with another process's removal it could put back a
   * host entry that process had just removed from ma_hosts and is about to remove from the trie.
   */
  reconcileHosts(): SyncResult {
    this.object('reconcile hosts');
    return this.changing(() => this.reconcileHostsNow());
  }

  private reconcileHostsNow(): SyncResult {
    const want = new Map(
      this.listIpcache()
        .filter((e) => Datapath.isHost(e.cidr))
        .map((e) => [e.cidr, e]),
    );
    const have = new Map(this.listHosts().map((e) => [e.cidr, e]));
    const r: SyncResult = { added: 0, updated: 0, removed: 0 };
    for (const cidr of have.keys()) {
      if (!want.has(cidr) && this.hosts.tryDelete(cidr)) r.removed++;
    }
    for (const [cidr, e] of want) {
      const h = have.get(cidr);
      if (h && h.identity === e.identity && h.nodeId === e.nodeId) continue;
      this.hosts.update(cidr, { identity: e.identity, nodeId: e.nodeId });
      if (h) r.updated++;
      else r.added++;
    }
    return r;
  }

  /**
   * Full reconciliations so far (syncIpcache and syncPolicy calls, each of which walks a whole
   * kernel map). A daemon does them at start-up only; afterwards every change is an applyDelta.
   */
  get fullSyncs(): number {
    return this.fullSyncCount;
  }

  /**
   * Makes the ipcache equal to `desired` (prefixes compared in canonical form), the host map
   * included. The counts are those of the LPM trie.
   */
  syncIpcache(desired: readonly IpcacheEntry[]): SyncResult {
    this.object('sync ipcache');
    this.fullSyncCount++;
    return this.changing(() => this.syncIpcacheNow(desired));
  }

  private syncIpcacheNow(desired: readonly IpcacheEntry[]): SyncResult {
    const want = new Map<string, IpcacheEntry>();
    for (const e of desired) want.set(formatCidr(parseCidr(e.cidr)), e);
    const have = new Map(this.listIpcache().map((e) => [e.cidr, e]));
    const haveHosts = new Map(this.listHosts().map((e) => [e.cidr, e]));
    const same = (a: IpcacheEntry | undefined, b: IpcacheEntry): boolean =>
      a !== undefined && a.identity === b.identity && a.nodeId === b.nodeId;
    const r: SyncResult = { added: 0, updated: 0, removed: 0 };
    for (const [cidr, e] of want) {
      const v = { identity: e.identity, nodeId: e.nodeId };
      const h = have.get(cidr);
      if (!same(h, e)) {
        this.ipcache.update(cidr, v);
        if (h) r.updated++;
        else r.added++;
      }
      if (Datapath.isHost(cidr) && !same(haveHosts.get(cidr), e)) this.hosts.update(cidr, v);
    }
    for (const cidr of haveHosts.keys()) if (!want.has(cidr)) this.hosts.tryDelete(cidr);
    for (const cidr of have.keys()) {
      if (!want.has(cidr) && this.ipcache.tryDelete(cidr)) r.removed++;
    }
    return r;
  }

  // ---- policy ----

  setPolicy(key: PolicyKey, authType: number, mode: PolicyMode = 'enforce'): void {
    this.object('set policy');
    this.changing(() => this.policy.update(key, { authType, mode }));
  }

  deletePolicy(key: PolicyKey): boolean {
    this.object('delete policy');
    return this.changing(() => this.policy.tryDelete(key));
  }

  listPolicy(): PolicyEntry[] {
    this.object('list policy');
    return [...this.policy.entries()].map(([k, v]) => ({ ...k, authType: v.authType, mode: v.mode }));
  }

  /** Makes the policy map equal to `desired`. */
  syncPolicy(desired: readonly PolicyEntry[]): SyncResult {
    this.object('sync policy');
    this.fullSyncCount++;
    return this.changing(() => this.syncPolicyNow(desired));
  }

  private syncPolicyNow(desired: readonly PolicyEntry[]): SyncResult {
    const key = (k: PolicyKey): string => `${k.localId}:${k.remoteId}`;
    const want = new Map(desired.map((e) => [key(e), e]));
    const have = new Map(this.listPolicy().map((e) => [key(e), e]));
    const r: SyncResult = { added: 0, updated: 0, removed: 0 };
    for (const [k, e] of want) {
      const h = have.get(k);
      const mode = e.mode ?? 'enforce';
      if (h && h.authType === e.authType && h.mode === mode) continue;
      this.policy.update({ localId: e.localId, remoteId: e.remoteId }, { authType: e.authType, mode });
      if (h) r.updated++;
      else r.added++;
    }
    for (const [k, h] of have) {
      if (!want.has(k) && this.policy.tryDelete(h)) r.removed++;
    }
    return r;
  }

  /**
   * Applies a change entry by entry, in the order described at DatapathDelta. Only the listed
   * entries are touched; no map is walked. `updated` counts upserts (the kernel does not say
   * whether a key existed), `removed` the removals of keys that were present.
   */
  applyDelta(d: DatapathDelta): DeltaResult {
    this.object('apply delta');
    return this.changing(() => this.applyDeltaNow(d));
  }

  private applyDeltaNow(d: DatapathDelta): DeltaResult {
    const r: DeltaResult = {
      ipcache: { added: 0, updated: 0, removed: 0 },
      policy: { added: 0, updated: 0, removed: 0 },
    };
    for (const e of d.policyUpsert ?? []) {
      this.policy.update(
        { localId: e.localId, remoteId: e.remoteId },
        { authType: e.authType, mode: e.mode ?? 'enforce' },
      );
      r.policy.updated++;
    }
    const upserted = new Set((d.ipcacheUpsert ?? []).map((e) => formatCidr(parseCidr(e.cidr))));
    for (const cidr of d.ipcacheRemove ?? []) {
      if (upserted.has(formatCidr(parseCidr(cidr)))) continue;
      if (this.removeIpcache(cidr)) r.ipcache.removed++;
    }
    for (const e of d.ipcacheUpsert ?? []) {
      this.writeIpcache(e.cidr, { identity: e.identity, nodeId: e.nodeId });
      r.ipcache.updated++;
    }
    for (const k of d.policyRemove ?? []) {
      if (this.policy.tryDelete({ localId: k.localId, remoteId: k.remoteId })) r.policy.removed++;
    }
    return r;
  }

  // ---- settings, counters, throttle ----

  /**
   * Writes the settings to the config map. synRtoMs defaults to 8 ms (see bpf/meshauth.h); kernelHz to the running
   * kernel's CONFIG_HZ (see kernel-hz.ts).
   */
  setSettings(s: DatapathSettings): void {
    this.object('set settings');
    if (!(s.signalThrottleMs >= 0) || !Number.isFinite(s.signalThrottleMs)) {
      throw new RangeError(`set settings: signalThrottleMs must be >= 0, got ${s.signalThrottleMs}`);
    }
    const synRtoMs = s.synRtoMs ?? DEFAULT_SYN_RTO_MS;
    if (!Number.isInteger(synRtoMs) || synRtoMs < SYN_RTO_MS_MIN || synRtoMs > SYN_RTO_MS_MAX) {
      throw new RangeError(
        `set settings: synRtoMs must be an integer in ${SYN_RTO_MS_MIN}..${SYN_RTO_MS_MAX}, got ${synRtoMs}`,
      );
    }
    const hz = s.kernelHz ?? kernelHz().hz;
    if (!Number.isInteger(hz) || hz < 24 || hz > 10_000) {
      throw new RangeError(`set settings: kernelHz must be an integer in 24..10000, got ${hz}`);
    }
    // 0 in the map means "kernel default"; a configured 0 ms becomes 1 ns (no throttling).
    const ns = BigInt(Math.round(s.signalThrottleMs * 1e6));
    this.changing(() =>
      this.configMap.update(0, {
        throttleNs: ns === 0n ? 1n : ns,
        wgIfindex: s.wireguardIfindex,
        flags: s.strictWireguard ? FLAG_STRICT_WIREGUARD : 0,
        synRtoMs,
        hz,
      }),
    );
  }

  settings(): DatapathSettings {
    this.object('read settings');
    const c = this.configMap.lookup(0);
    return {
      signalThrottleMs: c.throttleNs === 0n ? DEFAULT_SETTINGS.signalThrottleMs : Number(c.throttleNs) / 1e6,
      wireguardIfindex: c.wgIfindex,
      strictWireguard: (c.flags & FLAG_STRICT_WIREGUARD) !== 0,
      synRtoMs: c.synRtoMs === 0 ? DEFAULT_SYN_RTO_MS : c.synRtoMs,
      kernelHz: c.hz === 0 ? DEFAULT_HZ : c.hz,
    };
  }

  /** Per-verdict packet counts summed over CPUs. */
  counters(): VerdictCounters {
    this.object('read counters');
    const out = {} as VerdictCounters;
    VERDICT_NAMES.forEach((name, i) => (out[name] = this.countersMap.lookup(i)));
    return out;
  }

  /** Zeroes all counters. */
  resetCounters(): void {
    this.object('reset counters');
    VERDICT_NAMES.forEach((_n, i) => this.countersMap.update(i, 0n));
  }

  /** Forgets the last-signal times (the next drop of every pair signals at once). */
  clearThrottle(): number {
    this.object('clear throttle');
    let n = 0;
    for (const k of this.throttle.keys()) if (this.throttle.tryDelete(k)) n++;
    return n;
  }

  // ---- attachments ----

  private tcProgram(semantics: Semantics): string {
    return semantics === 'egress' ? PROGRAMS.tcEgress : PROGRAMS.tcIngress;
  }

  /**
   * Attaches the tc program of `semantics` to the clsact hook `hook` of `ifname` (in `netns` when
   * given). Replaces a previous meshauth filter on that hook.
   */
  attachTc(ifname: string, hook: TcHookPoint, semantics: Semantics, opts: { netns?: string } = {}): void {
    const fd = this.object('attach tc').programFd(this.tcProgram(semantics));
    const ifindex = attachTcProgram(fd, { ifname, hook, netns: opts.netns });
    this.log?.info(
      { event: 'tc_attached', ifname, ifindex, hook, semantics, netns: opts.netns },
      'tc program attached',
    );
  }

  /** Removes the meshauth filter from the hook; false when there was none. */
  detachTc(ifname: string, hook: TcHookPoint, opts: { netns?: string } = {}): boolean {
    this.object('detach tc');
    const r = detachTcProgram({ ifname, hook, netns: opts.netns });
    this.log?.info({ event: 'tc_detached', ifname, hook, found: r }, 'tc program detached');
    return r;
  }

  /** Kernel program id of the meshauth filter on the hook, or undefined. */
  tcProgramId(ifname: string, hook: TcHookPoint, opts: { netns?: string } = {}): number | undefined {
    this.object('query tc');
    return queryTcProgram({ ifname, hook, netns: opts.netns });
  }

  /** Attaches the cgroup_skb program of `hook` (egress hook = egress semantics) to a cgroup v2 dir. */
  attachCgroup(cgroupPath: string, hook: CgroupHookPoint): void {
    const fd = this.object('attach cgroup').programFd(
      hook === 'egress' ? PROGRAMS.cgroupEgress : PROGRAMS.cgroupIngress,
    );
    attachCgroupProgram(fd, cgroupPath, hook);
    this.log?.info({ event: 'cgroup_attached', cgroup: cgroupPath, hook }, 'cgroup program attached');
  }

  /** Detaches this object's cgroup program; false when it was not attached. */
  detachCgroup(cgroupPath: string, hook: CgroupHookPoint): boolean {
    const fd = this.object('detach cgroup').programFd(
      hook === 'egress' ? PROGRAMS.cgroupEgress : PROGRAMS.cgroupIngress,
    );
    return detachCgroupProgram(fd, cgroupPath, hook);
  }

  /** Kernel id of the pinned config map: what marks a sock_ops program as this node's. */
  private ownerMapId(op: string): number {
    return mapIdOf(this.object(op).mapInfo(MAPS.config.name).fd);
  }

  /**
   * Attaches the sock_ops program (initial SYN RTO of unauthenticated pairs) to a cgroup v2 dir
   * with BPF_F_ALLOW_MULTI. A program of an earlier run using the same pinned maps is replaced in
   * place; other programs (another node's meshauth) stay.
   */
  attachSockOps(cgroupPath: string): SockOpsAttachResult {
    const op = 'attach sock_ops';
    const r = attachSockOpsProgram(
      this.object(op).programFd(PROGRAMS.sockOps),
      cgroupPath,
      this.ownerMapId(op),
    );
    this.log?.info(
      { event: 'sockops_attached', cgroup: cgroupPath, prog_id: r.programId, replaced: r.replaced },
      'sock_ops program attached',
    );
    return r;
  }

  /** Detaches this node's sock_ops program(s) from the cgroup; false when there was none. */
  detachSockOps(cgroupPath: string): boolean {
    const r = detachSockOpsProgram(cgroupPath, this.ownerMapId('detach sock_ops'));
    this.log?.info({ event: 'sockops_detached', cgroup: cgroupPath, found: r }, 'sock_ops program detached');
    return r;
  }

  /** This node's sock_ops programs attached to the cgroup (normally zero or one). */
  sockOpsPrograms(cgroupPath: string): ProgramInfo[] {
    const owner = this.ownerMapId('query sock_ops');
    return querySockOpsPrograms(cgroupPath).filter((p) => p.mapIds.includes(owner));
  }

  // ---- signals, test runs ----

  /** A new reader of the signal ring buffer (use one at a time). Closed by close() at the latest. */
  signals(): RingBufSignalSource {
    const src = new RingBufSignalSource(this.object('open signals').mapInfo(MAPS.signals.name).fd);
    this.sources.add(src);
    return src;
  }

  /** File descriptor of one of the object's programs (PROGRAMS). */
  programFd(name: string): number {
    return this.object('program fd').programFd(name);
  }

  /** BPF_PROG_TEST_RUN of one of the programs. */
  testRun(program: string, opts: TestRunOptions): TestRunResult {
    return testRun(this.programFd(program), opts);
  }

  /** Closes fds and readers. Pins and attachments stay. Idempotent. */
  close(): void {
    if (!this.obj) return;
    for (const s of this.sources) s.close();
    this.sources.clear();
    for (const m of [
      this.ipcache,
      this.hosts,
      this.policy,
      this.authRaw,
      this.throttle,
      this.countersMap,
      this.configMap,
      this.generationMap,
      this.flowCacheMap,
    ])
      m.close();
    this.obj.close();
    this.obj = undefined;
    this.log?.info({ event: 'datapath_closed' }, 'datapath closed (pins and attachments kept)');
  }
}
