import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import type { AuditStore } from '../audit/index.js';
import type { Logger } from '../log.js';
import { auditServiceHandlers, type AuditQueueView } from './audit-service.js';
import type { DaemonView } from './daemon-view.js';
import { ApiServerError } from './errors.js';
import { HealthService } from './health.js';
import { AUDIT_SERVICE, loadServices, reflectionPackageDefinition, WITNESS_SERVICE } from './proto.js';
import { witnessServiceHandlers, type WitnessView } from './witness-service.js';
import {
  authorizeCall,
  guardHandlers,
  SpiffeServerCredentials,
  type BundleMap,
  type SvidVerifier,
  type TlsMaterial,
} from './tcp-auth.js';
import { prepareSocketPath, restrictSocket } from './unix-socket.js';

export const DEFAULT_SOCKET_PATH = '/run/meshauth/api.sock';

export interface UnixListenerOptions {
  /** Default /run/meshauth/api.sock. */
  path?: string;
  /** File mode of the socket: 0o600 (default) or 0o660 together with `group`. */
  mode?: number;
  /** Group owning the socket (name or gid), for mode 0o660. */
  group?: string | number;
}

export interface TcpListenerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 = any free port (see ApiServer.tcpPort). */
  port: number;
  /** The daemon's X509-SVID chain (PEM, leaf first) and key (PEM) presented to clients. */
  certChainPem?: Buffer | string;
  keyPem?: Buffer | string;
  /**
   * The SVID to present, re-read on every TLS refresh (rotation without restart). Takes precedence
   * over certChainPem / keyPem; undefined keeps the previous one.
   */
  svid?: () => TcpIdentity | undefined;
  /** Current trust bundles: read on every call, and for the TLS CA list on every refresh. */
  bundles: () => BundleMap;
  /** Client SPIFFE IDs allowed to call; everyone else gets PERMISSION_DENIED. */
  allow: readonly string[];
  /**
   * When set, the SPIFFE IDs allowed to call meshauth.v1.Witness/SubmitHead (read on every call),
   * and only they: `allow` then no longer covers SubmitHead, and these IDs reach no other method
   * (meshauth-relay: nodes submitting heads are not query clients, and query clients submit none).
   */
  submitAllow?: () => ReadonlySet<string>;
  /** How often svid() and bundles() are re-read into the TLS context for new connections. Default 30 s. */
  refreshMs?: number;
}

export interface TcpIdentity {
  certChainPem: Buffer | string;
  keyPem: Buffer | string;
}

/** meshauth.v1.Audit handlers other than the store-backed ones (meshauth-relay serves the cluster's). */
export type AuditHandlers = grpc.UntypedServiceImplementation & { closeFollowers(): void };

export interface ApiServerOptions {
  store?: AuditStore;
  daemon?: DaemonView;
  /** Serve these meshauth.v1.Audit handlers instead of the ones backed by store and daemon. */
  auditHandlers?: AuditHandlers;
  /** Serve meshauth.v1.Witness (witnessed audit heads) with this witness. */
  witness?: WitnessView;
  /** The writer feeding the store, for queue depth / drops in GetStatus. */
  queue?: AuditQueueView;
  /** Unix socket listener (default on). false = none. */
  unix?: UnixListenerOptions | false;
  /** Optional mTLS TCP listener. */
  tcp?: TcpListenerOptions;
  logger?: Logger;
  /** How often follow streams poll for rows written by other processes. Default 250 ms. */
  followPollMs?: number;
}

export interface ApiServer {
  readonly socketPath: string | undefined;
  readonly tcpPort: number | undefined;
  readonly health: HealthService;
  /** Re-read the TCP listener's SVID and trust bundles now (call on rotation); no-op without TCP. */
  refreshTls(): void;
  /** Stop accepting calls, end follow streams, remove the socket file. Idempotent. */
  close(): Promise<void>;
}

function bind(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port)));
  });
}

function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2000);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Start the gRPC API: meshauth.v1.Audit, grpc.health.v1.Health and server reflection. */
export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const services = loadServices();
  const health = new HealthService(opts.witness ? [AUDIT_SERVICE, WITNESS_SERVICE] : [AUDIT_SERVICE]);
  let audit: AuditHandlers;
  if (opts.auditHandlers) audit = opts.auditHandlers;
  else if (opts.store && opts.daemon)
    audit = auditServiceHandlers({
      store: opts.store,
      daemon: opts.daemon,
      ...(opts.queue ? { queue: opts.queue } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.followPollMs !== undefined ? { followPollMs: opts.followPollMs } : {}),
    });
  else throw new ApiServerError('api: start: needs store and daemon, or auditHandlers');
  const witnessHandlers = opts.witness ? witnessServiceHandlers(opts.witness, opts.logger) : undefined;
  const { closeFollowers, ...auditHandlers } = audit;
  const reflection = new ReflectionService(reflectionPackageDefinition(Boolean(opts.witness)));
  const servers: grpc.Server[] = [];
  let socketPath: string | undefined;
  let tcpPort: number | undefined;
  let refreshTls = (): void => {};
  let refreshTimer: NodeJS.Timeout | undefined;

  /** A server with every service; `guard` wraps each handler (the TCP listener's authorization). */
  const newServer = (
    guard?: (h: grpc.UntypedServiceImplementation, service: string) => grpc.UntypedServiceImplementation,
  ): grpc.Server => {
    const s = new grpc.Server({ 'grpc.max_concurrent_streams': 256 });
    const wrap = guard ?? ((h: grpc.UntypedServiceImplementation) => h);
    s.addService(services.audit.service, wrap(auditHandlers, AUDIT_SERVICE));
    if (witnessHandlers) s.addService(services.witness.service, wrap(witnessHandlers, WITNESS_SERVICE));
    s.addService(services.health.service, wrap(health.handlers(), 'grpc.health.v1.Health'));
    // the reflection service registers itself; route it through the same guard
    reflection.addToServer({
      addService: (def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) =>
        s.addService(def, wrap(impl, 'grpc.reflection')),
    } as unknown as grpc.Server);
    servers.push(s);
    return s;
  };

  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (refreshTimer) clearInterval(refreshTimer);
    health.setAll('NOT_SERVING');
    health.close();
    closeFollowers();
    await Promise.all(servers.map(shutdown));
    if (socketPath) {
      const { rmSync } = await import('node:fs');
      rmSync(socketPath, { force: true });
    }
  };

  try {
    if (opts.unix !== false) {
      const u = opts.unix ?? {};
      const path = u.path ?? DEFAULT_SOCKET_PATH;
      const mode = u.mode ?? 0o600;
      if ((mode & 0o007) !== 0)
        throw new ApiServerError(`api: socket mode ${mode.toString(8)} would let anyone connect`);
      await prepareSocketPath(path);
      const server = newServer();
      // The socket is created with the process umask; narrow it while binding so it is never
      // reachable by others before chmod.
      const oldMask = process.umask(0o177);
      try {
        await bind(server, `unix://${path}`, grpc.ServerCredentials.createInsecure());
      } finally {
        process.umask(oldMask);
      }
      socketPath = path;
      restrictSocket(path, mode, u.group);
      opts.logger?.info(
        { event: 'api_listening', socket: path, mode: mode.toString(8) },
        'API listening on Unix socket',
      );
    }
    if (opts.tcp) {
      const t = opts.tcp;
      const allow = new Set(t.allow);
      if (allow.size === 0)
        throw new ApiServerError('api: TCP listener needs at least one allowed client SPIFFE ID');
      // Loaded only when a TCP listener is configured.
      const { verifyX509Svid, toPem } = await import('../spiffe/index.js');
      const verify: SvidVerifier = (chain, bundles) => verifyX509Svid(chain, bundles);
      let identity: TcpIdentity | undefined =
        t.certChainPem !== undefined && t.keyPem !== undefined
          ? { certChainPem: t.certChainPem, keyPem: t.keyPem }
          : undefined;
      const material = (): TlsMaterial => {
        identity = t.svid?.() ?? identity;
        if (!identity)
          throw new ApiServerError(
            'api: TCP listener has no SVID to present (certChainPem/keyPem or svid())',
          );
        const cas = [...t.bundles().values()].flat();
        if (cas.length === 0)
          throw new ApiServerError('api: TCP listener has no trust bundle to check clients against');
        return { ...identity, caPem: toPem(cas) };
      };
      const fingerprint = (m: TlsMaterial): string =>
        `${String(m.certChainPem)}\u0000${String(m.keyPem)}\u0000${String(m.caPem)}`;
      let current = material();
      const creds = new SpiffeServerCredentials(current);
      refreshTls = () => {
        try {
          const next = material();
          if (fingerprint(next) === fingerprint(current)) return;
          creds.update(next);
          current = next;
          opts.logger?.info(
            { event: 'api_tls_refreshed' },
            'API TCP listener certificate or trust bundles updated',
          );
        } catch (err) {
          opts.logger?.error({ event: 'api_tls_refresh_failed', err }, 'API TCP listener TLS refresh failed');
        }
      };
      const submitAllow = t.submitAllow;
      const server = newServer((h, service) =>
        guardHandlers(h, (call, method) => {
          if (!submitAllow) return authorizeCall(call, verify, t.bundles(), allow);
          const isSubmit = service === WITNESS_SERVICE && method === 'SubmitHead';
          // health checks answer either list: both kinds of client may probe the listener
          const ids =
            service === 'grpc.health.v1.Health'
              ? new Set([...allow, ...submitAllow()])
              : isSubmit
                ? submitAllow()
                : allow;
          const r = authorizeCall(call, verify, t.bundles(), ids);
          if (r.ok || r.spiffeId === undefined) return r;
          if (!isSubmit && submitAllow().has(r.spiffeId))
            return { ...r, message: `${r.message} of query clients (it may only submit audit heads)` };
          if (isSubmit && allow.has(r.spiffeId))
            return { ...r, message: `${r.message} of nodes that submit audit heads (it is a query client)` };
          return r;
        }),
      );
      const host = t.host ?? '127.0.0.1';
      const hostPart = host.includes(':') ? `[${host}]` : host;
      tcpPort = await bind(server, `${hostPart}:${t.port}`, creds);
      refreshTimer = setInterval(() => refreshTls(), t.refreshMs ?? 30_000);
      refreshTimer.unref();
      opts.logger?.info({ event: 'api_listening', host, port: tcpPort }, 'API listening on TCP (mTLS)');
    }
  } catch (err) {
    await close();
    if (err instanceof ApiServerError) throw err;
    throw new ApiServerError(`api: start: ${(err as Error).message}`, { cause: err });
  }
  if (servers.length === 0) throw new ApiServerError('api: start: no listener configured');

  return {
    get socketPath() {
      return socketPath;
    },
    get tcpPort() {
      return tcpPort;
    },
    health,
    refreshTls: () => refreshTls(),
    close,
  };
}
