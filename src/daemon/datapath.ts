import type { Logger } from 'pino';
import { ConfigError, type DaemonConfig } from '../config/index.js';
import {
  Datapath,
  diffMaps,
  ensurePinDir,
  isEmptyDelta,
  PinMismatchError,
  SupervisedSignalSource,
  type MapsState,
} from '../datapath/index.js';
import type { AuthMap, VerdictCounters } from '../datapath/index.js';
import type { NodeState } from '../policy/index.js';

/** The datapath as the daemon uses it. */
export interface DaemonDatapath {
  datapath: Datapath;
  auth: AuthMap;
  /** The ring-buffer reader, restarted with backoff when it stops; `health()` feeds /readyz. */
  signals: SupervisedSignalSource;
  /**
   * Makes ipcache and policy equal to the node state: the first call (start-up) reconciles the
   * whole pinned maps, later calls write only the entries that changed since the previous call.
   */
  sync(state: NodeState): void;
  /** Whole-map reconciliations so far (1 after start-up; more only after a failed delta). */
  fullSyncs(): number;
  counters(): VerdictCounters;
  /** Closes fds; pins and attachments stay so enforcement continues. */
  close(): void;
  /**
   * Undoes what this start did to the kernel, for a start that fails after the datapath opened
   * (call before close()): a first start detaches the programs it attached and removes the pins it
   * made; a restart over existing pins writes back the ipcache and policy entries the pinned maps
   * held before it (the previous run's programs, or this build's replacing them, enforce those).
   */
  unwindStart(): void;
}

export interface OpenDatapathExtras {
  /** ifindex of the node's WireGuard interface (0 = none). */
  wireguardIfindex?: number;
}

/**
 * Loads the BPF object (reusing pinned maps), writes settings, ipcache and policy, then attaches the
 * programs at the configured points. Order matters: maps are filled before any program can see
 * traffic, so a restart never enforces against an empty ipcache. The attach points were checked
 * before (preflight.ts); should attaching still fail, what this start changed is undone (unwindStart).
 */
export async function openDatapath(
  config: DaemonConfig,
  state: NodeState,
  logger: Logger,
  extras: OpenDatapathExtras = {},
): Promise<DaemonDatapath> {
  const log = logger.child({ component: 'datapath' });
  ensurePinDir(config.bpf.pinDir);
  // A first start that fails before attaching anything leaves no pins behind; a restart keeps them.
  const hadPins = Datapath.hasPins(config.bpf.pinDir);
  let attached = 0;
  const options = {
    objectPath: config.bpf.object,
    pinDir: config.bpf.pinDir,
    settings: {
      signalThrottleMs: config.datapath.signalThrottleMs,
      wireguardIfindex: extras.wireguardIfindex ?? 0,
      strictWireguard: config.datapath.strictWireguard,
      synRtoMs: config.datapath.synRtoMs,
    },
    mapSizes: config.datapath.maps,
    logger: log,
  };
  let datapath: Datapath;
  try {
    datapath = Datapath.open(options);
  } catch (err) {
    if (!(err instanceof PinMismatchError)) throw err;
    // Pins from an incompatible build (an upgrade changed a map's layout). The attached programs
    // keep enforcing with the old maps until ours replace them; every pair then re-authenticates.
    log.warn(
      { event: 'pins_incompatible', pin_dir: config.bpf.pinDir, err },
      'pinned maps do not match this build: recreating them (live entries are lost; pairs re-authenticate)',
    );
    Datapath.removePins(config.bpf.pinDir);
    ensurePinDir(config.bpf.pinDir);
    datapath = Datapath.open(options);
  }
  // What a restart found in the pinned maps: written back if this start fails after changing them.
  const previous = hadPins ? { ipcache: datapath.listIpcache(), policy: datapath.listPolicy() } : undefined;
  const unwind = (): void => {
    if (previous) {
      datapath.syncIpcache(previous.ipcache);
      datapath.syncPolicy(previous.policy);
      log.info(
        { event: 'maps_restored', pin_dir: config.bpf.pinDir },
        'start failed: wrote back the ipcache and policy entries the pinned maps held before',
      );
      return;
    }
    for (const a of config.datapath.attach.slice(0, attached)) {
      try {
        if (a.type === 'tc') datapath.detachTc(a.interface, a.hook);
        else if (a.type === 'sockops') datapath.detachSockOps(a.path);
        else datapath.detachCgroup(a.path, a.hook);
      } catch (err) {
        log.error({ event: 'detach_failed', err }, 'start failed: a program this start attached stays');
      }
    }
    datapath.close();
    Datapath.removePins(config.bpf.pinDir);
    log.info(
      { event: 'pins_removed', pin_dir: config.bpf.pinDir },
      'start failed: detached the programs and removed the maps this start attached and pinned',
    );
  };
  try {
    const maps = (s: NodeState): MapsState => ({
      ipcache: s.ipcache,
      policy: s.policy.map((p) => ({ ...p.key, authType: p.authType, mode: p.mode })),
    });
    // What the maps hold since the last successful write; undefined = unknown (reconcile fully).
    let applied: MapsState | undefined;
    let fullSyncs = 0;
    const sync = (s: NodeState): void => {
      const next = maps(s);
      if (!applied) {
        fullSyncs++;
        const ip = datapath.syncIpcache(next.ipcache);
        const pol = datapath.syncPolicy(next.policy);
        applied = next;
        log.info({ event: 'maps_synced', ipcache: ip, policy: pol }, 'ipcache and policy maps synced');
        return;
      }
      const delta = diffMaps(applied, next);
      if (isEmptyDelta(delta)) return;
      try {
        const r = datapath.applyDelta(delta);
        applied = next;
        log.debug({ event: 'maps_updated', ...r }, 'ipcache and policy entries updated');
      } catch (err) {
        applied = undefined; // partly written: the next sync reconciles the whole maps
        throw err;
      }
    };
    sync(state);
    config.datapath.attach.forEach((a, i) => {
      try {
        if (a.type === 'tc') datapath.attachTc(a.interface, a.hook, a.semantics);
        else if (a.type === 'sockops') datapath.attachSockOps(a.path);
        else datapath.attachCgroup(a.path, a.hook);
      } catch (err) {
        // Name the setting: the operator fixes the configuration, not the kernel.
        const where = a.type === 'tc' ? `interface ${a.interface}` : `path ${a.path}`;
        throw new ConfigError(
          [`datapath.attach[${i}] (${a.type} ${where}): ${err instanceof Error ? err.message : String(err)}`],
          { cause: err, code: (err as { code?: string }).code ?? 'MESHAUTH_ERR_DATAPATH' },
        );
      }
      attached++;
    });
    const signals = new SupervisedSignalSource({
      open: () => datapath.signals(),
      onStateChange: (e) => {
        if (e.type === 'restarted') {
          log.info({ event: 'signal_reader_restarted', restarts: e.restarts }, 'signal reader restarted');
        } else {
          log.error(
            { event: 'signal_reader_stopped', err: e.error, restarts: e.restarts, retry_in_ms: e.retryInMs },
            e.type === 'open-failed'
              ? 'signal reader could not be opened: retrying (not ready meanwhile)'
              : 'signal reader stopped: restarting (not ready meanwhile)',
          );
        }
      },
    });
    return {
      datapath,
      auth: datapath.auth,
      signals,
      sync,
      fullSyncs: () => fullSyncs,
      counters: () => datapath.counters(),
      close: () => datapath.close(),
      unwindStart: unwind,
    };
  } catch (err) {
    try {
      unwind();
    } finally {
      datapath.close();
    }
    throw err;
  }
}
