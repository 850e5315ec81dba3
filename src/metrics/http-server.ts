import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { MeshauthError } from '../errors.js';
import type { Registry } from 'prom-client';
import type { Metrics } from './metrics.js';

/** Readiness: true, or false / a reason string when not ready. */
export type ReadinessCheck = () => boolean | { ready: boolean; reason?: string };

export interface MetricsServerOptions {
  /** What /metrics serves: a Metrics instance, or any prom-client registry (one of the two is required). */
  metrics?: Metrics;
  registry?: Registry;
  /** Default 0.0.0.0. */
  host?: string;
  /** 0 = any free port. */
  port: number;
  /** /readyz answers 200 only when this says ready (default: always ready). */
  ready?: ReadinessCheck;
  logger?: Logger;
}

export interface MetricsServer {
  readonly port: number;
  /** Idempotent. */
  close(): Promise<void>;
}

export class MetricsServerError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_METRICS_SERVER', message, options);
  }
}

/** HTTP server with /metrics (Prometheus text), /healthz (process alive) and /readyz. */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const registry = opts.registry ?? opts.metrics?.registry;
  if (!registry) throw new MetricsServerError('metrics: start: give either metrics or registry');
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': registry.contentType }).end(body);
        },
        (err: unknown) => {
          opts.logger?.error({ event: 'metrics_collect_failed', err }, 'metrics collection failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
        },
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      let ready: boolean;
      let reason = '';
      try {
        const r = opts.ready?.() ?? true;
        if (typeof r === 'boolean') ready = r;
        else {
          ready = r.ready;
          reason = r.reason ?? '';
        }
      } catch (err) {
        ready = false;
        reason = (err as Error).message;
      }
      res
        .writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(ready ? 'ready\n' : `not ready${reason ? `: ${reason}` : ''}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new MetricsServerError(`metrics: listen on ${opts.host ?? '0.0.0.0'}:${opts.port}: ${err.message}`, {
          cause: err,
        }),
      ),
    );
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  opts.logger?.info({ event: 'metrics_listening', port }, 'metrics listening');
  let closing: Promise<void> | undefined;
  return {
    port,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
