import type { Logger } from 'pino';
import {
  startApiServer,
  type ApiServer,
  type DaemonView,
  type EntryView,
  type FlushRequest,
  type StatusView,
} from '../api/index.js';
import type { AuthCache, AuthManager } from '../auth/index.js';
import type { HandshakeServer } from '../auth/handshake/index.js';
import type { DaemonConfig } from '../config/index.js';
import type { AuthKey } from '../datapath/index.js';
import type { IdentitySource } from '../identity/index.js';
import type { Inventory } from '../inventory/index.js';
import { Metrics, startMetricsServer, type MetricsServer } from '../metrics/index.js';
import { VERSION } from '../version.js';
import type { DaemonAudit } from './audit.js';
import type { DaemonDatapath } from './datapath.js';
import type { DaemonResolver } from './resolver.js';
import type { DaemonSources } from './sources.js';
import { daemonWitness, type DaemonWitness } from './witness.js';

export interface OperationsDeps {
  config: DaemonConfig;
  logger: Logger;
  audit: DaemonAudit;
  datapath: DaemonDatapath;
  cache: AuthCache;
  resolver: DaemonResolver;
  identity: IdentitySource;
  manager: AuthManager;
  server: HandshakeServer;
  inventory: () => Inventory;
  /** Extra status fields (WireGuard, ...). */
  extraStatus?: () => Record<string, number>;
  /** Inventory and policy sources: readiness (first full sync), status fields, metrics. */
  sources?: Pick<DaemonSources, 'notReady' | 'status' | 'registerMetrics'>;
}

export interface DaemonOperations {
  metrics: Metrics;
  api: ApiServer;
  close(): Promise<void>;
}

/** Builds the read-only view of the daemon that the API serves. */
export function daemonView(deps: OperationsDeps, startedAtMs: number): DaemonView {
  const { config, datapath, cache, resolver, identity, manager, audit } = deps;
  const names = (k: AuthKey): { localId: string; remoteId: string; remoteNode: string } => {
    const n = resolver.names(k);
    return {
      localId: n.localId ?? `#${k.localId}`,
      remoteId: n.remoteId ?? `#${k.remoteId}`,
      remoteNode: n.node ?? `#${k.remoteNode}`,
    };
  };
  const liveEntries = (): Array<[AuthKey, number]> => {
    const now = Date.now();
    const out: Array<[AuthKey, number]> = [];
    for (const [k, v] of datapath.auth.entries()) if (v.expiresAtMs > now) out.push([k, v.expiresAtMs]);
    return out;
  };
  return {
    listEntries(): EntryView[] {
      return liveEntries().map(([k, exp]) => ({
        ...names(k),
        localIdentity: k.localId,
        remoteIdentity: k.remoteId,
        remoteNodeId: k.remoteNode,
        authType: k.authType,
        expiresAtMs: exp,
      }));
    },
    status(): StatusView {
      const counters: Record<string, number> = {};
      try {
        for (const [k, v] of Object.entries(datapath.counters())) counters[`datapath_${k}`] = Number(v);
      } catch {
        // Counters unreadable: reported as attached=false below.
      }
      const q = manager.stats();
      counters.auth_queued = q.queued;
      counters.auth_in_flight = q.inFlight;
      counters.auth_backoff = q.backoff;
      counters.audit_queue_depth = audit.writer.queueDepth;
      counters.audit_dropped = audit.writer.dropped;
      Object.assign(counters, deps.extraStatus?.() ?? {});
      Object.assign(counters, deps.sources?.status() ?? {});
      const ids = deps.inventory().spiffeIdsOnNode(config.node);
      return {
        version: VERSION,
        node: config.node,
        startedAtMs,
        datapath: {
          attached: 'datapath_pass_no_policy' in counters,
          mode:
            config.datapath.attach
              .map((a) =>
                a.type === 'tc'
                  ? `tc/${a.interface}/${a.hook}`
                  : a.type === 'sockops'
                    ? 'sockops'
                    : `cgroup/${a.hook}`,
              )
              .join(',') || 'none',
          detail: `pins ${config.bpf.pinDir}`,
        },
        identitySource: {
          kind: identity.kind,
          connected: ids.every((id) => identity.svid(id) !== undefined),
        },
        identities: ids.map((id) => {
          const s = identity.svid(id);
          return s ? { spiffeId: id, notAfterMs: s.notAfter.getTime() } : { spiffeId: id };
        }),
        counters,
        entries: liveEntries().length,
        versions: { meshauth: VERSION, node: process.version },
      };
    },
    flush(req: FlushRequest): number {
      let n = 0;
      for (const [k] of liveEntries()) {
        const nm = names(k);
        const match =
          'all' in req ||
          (nm.localId === req.localId &&
            nm.remoteId === req.remoteId &&
            (req.node === undefined || nm.remoteNode === req.node));
        if (!match) continue;
        const had = cache.delete(k) || datapath.auth.delete(k);
        if (had) {
          n++;
          audit.sink.record({
            type: 'entry-removed',
            outcome: 'info',
            reason: 'flushed',
            localId: nm.localId,
            remoteId: nm.remoteId,
            node: nm.remoteNode,
          });
        }
      }
      return n;
    },
  };
}

/**
 * /readyz: the kernel maps answer, the ring-buffer signal reader runs (without it no drop ever
 * turns into a handshake) and every local workload has an SVID (or there are none).
 */
export function daemonReadiness(
  deps: {
    datapath: Pick<DaemonDatapath, 'counters'> & {
      signals: Pick<DaemonDatapath['signals'], 'health'>;
    };
    identity: Pick<IdentitySource, 'svid'>;
    sources?: { notReady(): string | undefined };
  },
  localIds: readonly string[],
): { ready: boolean; reason?: string } {
  try {
    deps.datapath.counters();
  } catch (err) {
    return { ready: false, reason: `datapath: ${(err as Error).message}` };
  }
  const reader = deps.datapath.signals.health();
  if (!reader.ready) return reader;
  const sourcesReason = deps.sources?.notReady();
  if (sourcesReason) return { ready: false, reason: sourcesReason };
  const missing = localIds.filter((id) => !deps.identity.svid(id));
  return missing.length === 0
    ? { ready: true }
    : { ready: false, reason: `no SVID for ${missing.join(', ')}` };
}

/** Metrics endpoint and the gRPC API. */
export async function startOperations(deps: OperationsDeps): Promise<DaemonOperations> {
  const { config, logger } = deps;
  const metrics = new Metrics();
  metrics.setVerdictSource(() => deps.datapath.counters());
  metrics.setAuthQueueSource(() => deps.manager.stats());
  deps.sources?.registerMetrics(metrics.registry, () => deps.datapath.fullSyncs());
  deps.audit.setObserver(metrics.auditObserver());
  const startedAtMs = Date.now();
  const localIds = (): string[] => deps.inventory().spiffeIdsOnNode(config.node);
  // SVID time-to-expiry, kept current from the rotation event stream.
  for (const id of localIds()) {
    const s = deps.identity.svid(id);
    if (s) metrics.setSvidNotAfter(id, s.notAfter.getTime());
  }
  let refreshTls: () => void = () => {};
  const unsubscribe = deps.identity.subscribe((ev) => {
    if (ev.type === 'svid-updated') metrics.setSvidNotAfter(ev.spiffeId, ev.svid.notAfter.getTime());
    else if (ev.type === 'svid-removed') metrics.removeSvid(ev.spiffeId);
    if (ev.type !== 'source-state') refreshTls();
  });
  const ready = (): { ready: boolean; reason?: string } => daemonReadiness(deps, localIds());
  let metricsServer: MetricsServer | undefined;
  let api: ApiServer | undefined;
  let witness: DaemonWitness | undefined;
  try {
    if (config.metrics.listen) {
      metricsServer = await startMetricsServer({
        metrics,
        host: config.metrics.listen.host,
        port: config.metrics.listen.port,
        ready,
        logger: logger.child({ component: 'metrics' }),
      });
    }
    let tcp: Parameters<typeof startApiServer>[0]['tcp'];
    if (config.api.tcp) {
      // The listener presents the SVID of api.tcp.identity, or of this node's first workload that
      // has one; re-read on every rotation (refreshTls below).
      const wanted = config.api.tcp.identity;
      const own = (): { certChainPem: string; keyPem: string } | undefined => {
        for (const id of wanted === undefined ? localIds() : [wanted]) {
          const s = deps.identity.svid(id);
          if (s) return { certChainPem: s.chainPem, keyPem: s.keyPem };
        }
        return undefined;
      };
      if (!own()) {
        throw new Error(
          wanted === undefined
            ? 'api: the TCP listener needs an SVID of a workload on this node to present (or set api.tcp.identity)'
            : `api: the TCP listener should present ${wanted} (api.tcp.identity), but the identity source has no SVID for it`,
        );
      }
      if (wanted === undefined) {
        logger.warn(
          { event: 'api_tcp_identity_default', component: 'api' },
          "api.tcp.identity is not set: the TCP listener presents a workload's SVID; set it to this daemon's own SPIFFE ID",
        );
      }
      tcp = {
        host: config.api.tcp.listen.host,
        port: config.api.tcp.listen.port,
        svid: own,
        bundles: () => new Map([...deps.identity.bundles()].map(([td, ders]) => [td, [...ders]])),
        allow: config.api.tcp.allowedIds,
      };
    }
    const bundles = () => new Map([...deps.identity.bundles()].map(([td, ders]) => [td, [...ders]]));
    const selfId = config.api.tcp?.identity;
    witness = daemonWitness({
      config,
      logger,
      store: deps.audit.store,
      sink: deps.audit.sink,
      bundles,
      observer: metrics.witnessObserver(),
      ...(selfId && tcp?.svid
        ? {
            self: {
              spiffeId: selfId,
              svid: tcp.svid as () => { certChainPem: string; keyPem: string } | undefined,
            },
          }
        : {}),
    });
    api = await startApiServer({
      witness: witness.view,
      store: deps.audit.store,
      daemon: daemonView(deps, startedAtMs),
      queue: deps.audit.writer,
      unix: { path: config.api.socket, mode: config.api.socketMode },
      ...(tcp ? { tcp } : {}),
      logger: logger.child({ component: 'api' }),
    });
  } catch (err) {
    unsubscribe();
    witness?.close();
    await metricsServer?.close();
    throw err;
  }
  const apiServer = api;
  const witnessing = witness;
  refreshTls = () => {
    if (!config.api.tcp) return;
    try {
      apiServer.refreshTls();
    } catch (err) {
      logger.warn(
        { component: 'api', event: 'api_tls_refresh_failed', err },
        'TCP listener kept its previous SVID',
      );
    }
  };
  return {
    metrics,
    api: apiServer,
    async close() {
      unsubscribe();
      // the API first: no head arrives after the witness wrote its pending refusal summaries
      await apiServer.close();
      witnessing.close();
      await metricsServer?.close();
    },
  };
}
