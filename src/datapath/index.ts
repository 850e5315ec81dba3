/** Public face of the datapath: the BPF object, its maps, attachments and signals. */
export * from './types.js';
export {
  Datapath,
  KernelAuthMap,
  VERDICT_CACHE_SUPPORTED,
  DEFAULT_SETTINGS,
  SYN_RTO_MS_MIN,
  SYN_RTO_MS_MAX,
  mapMaxEntries,
  type DatapathOptions,
  type MapSizes,
  type DatapathDelta,
  type DeltaResult,
  type PolicyEntry,
  type Semantics,
  type SyncResult,
} from './datapath.js';
export { diffMaps, isEmptyDelta, type MapsState } from './delta.js';
export { BpfObject, type BpfObjectOptions } from './bpf-object.js';
export { BpfMap, UpdateFlags, numPossibleCpus, type MapInfo } from './map.js';
export { RingBufReader, type RingBufReaderOptions } from './ringbuf.js';
export { RingBufSignalSource } from './signals.js';
export {
  SynReplay,
  RawSocketSender,
  prepareSyn,
  synReplayBlocker,
  type RawPacketSender,
  type SynReplayOptions,
  type SynNotReplayedReason,
} from './syn-replay.js';
export {
  attachTcProgram,
  detachTcProgram,
  queryTcProgram,
  attachCgroupProgram,
  detachCgroupProgram,
  attachSockOpsProgram,
  detachSockOpsProgram,
  querySockOpsPrograms,
  programInfo,
  programIdOf,
  interfaceIndex,
  mapIdOf,
  TC_HANDLE,
  TC_PRIORITY,
} from './attach.js';
export type { TcHookPoint, CgroupHookPoint, TcTarget, ProgramInfo, SockOpsAttachResult } from './attach.js';
export {
  detectKernelHz,
  kernelHz,
  parseConfigHz,
  FALLBACK_HZ,
  type KernelHz,
  type KernelHzSources,
} from './kernel-hz.js';
export {
  bootNowNs,
  wallMsToBootNs,
  bootNsToWallMs,
  systemClocks,
  CLOCK_BOOTTIME,
  type Clocks,
} from './clock.js';
export { testRun, type TestRunOptions, type TestRunResult } from './test-run.js';
export { buildTcpSyn, buildMplsTcpSyn, buildArp, type TcpSynOptions } from './packets.js';
export { ensurePinDir, isOnBpffs, fsTypeOf, removePinFiles, DEFAULT_BPFFS } from './bpffs.js';
export { withNetns } from './netns.js';
export { parseCidr, formatCidr, addressBytes, type LpmPrefix } from './cidr.js';
export * as wire from './wire.js';
export {
  DatapathError,
  KeyNotExistError,
  VerifierError,
  PinMismatchError,
  SizeMismatchError,
  BpffsError,
  DatapathInputError,
  errnoName,
} from './errors.js';
export {
  SupervisedSignalSource,
  type SignalSupervisorOptions,
  type SignalReaderEvent,
  type SupervisorTimers,
} from './signal-supervisor.js';
