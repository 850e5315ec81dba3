import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ApiClient, ApiClientError, DEFAULT_SOCKET_PATH } from '../api/index.js';
import { CliError } from './errors.js';
import type { CliIo } from './io.js';

export interface GlobalOptions {
  socket?: string;
  address?: string;
  relay?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsBundle?: string;
  serverId?: string;
  timeout?: string;
}

/**
 * The API socket path, made absolute against the working directory: gRPC reads `unix://api.sock`
 * as an authority, not a relative path.
 */
export function socketPathOf(g: GlobalOptions, io: CliIo): string {
  return resolve(g.socket ?? io.env['MESHAUTH_SOCKET'] ?? DEFAULT_SOCKET_PATH);
}

/** Longest --timeout accepted, seconds. */
const MAX_TIMEOUT_S = 3600;

/** --timeout in milliseconds: a number of seconds in (0, 3600]; anything else is a usage error (exit 2). */
export function timeoutMsOf(g: GlobalOptions): number {
  if (g.timeout === undefined) return 10_000;
  const text = g.timeout.trim();
  const s = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : NaN;
  if (!(s > 0 && s <= MAX_TIMEOUT_S)) {
    throw new CliError(
      `--timeout ${JSON.stringify(g.timeout)}: expected a number of seconds greater than 0 and at most ${MAX_TIMEOUT_S}`,
      2,
    );
  }
  return Math.round(s * 1000);
}

function readPem(flag: string, path: string | undefined): Buffer {
  if (!path) throw new CliError(`--address and --relay need ${flag}`, 2);
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CliError(`${flag} ${path}: ${(err as Error).message}`, 2);
  }
}

export function connect(g: GlobalOptions, io: CliIo): ApiClient {
  const timeoutMs = timeoutMsOf(g);
  if (g.address && g.relay)
    throw new CliError('give --address (one node) or --relay (the cluster), not both', 2);
  const address = g.address ?? g.relay;
  if (address) {
    return new ApiClient({
      address,
      timeoutMs,
      tls: {
        certChainPem: readPem('--tls-cert', g.tlsCert),
        keyPem: readPem('--tls-key', g.tlsKey),
        caPem: readPem('--tls-bundle', g.tlsBundle),
        ...(g.serverId ? { serverSpiffeId: g.serverId } : {}),
      },
    });
  }
  return new ApiClient({ socket: socketPathOf(g, io), timeoutMs });
}

/** Turn an API failure into a message a person can act on. */
export function explain(err: unknown, client: ApiClient | undefined): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof ApiClientError) {
    const where = client?.target ?? 'the daemon';
    switch (err.grpcCode) {
      case grpc.status.UNAVAILABLE:
      case grpc.status.DEADLINE_EXCEEDED:
        return new CliError(
          `cannot reach meshauthd on ${where}: is the daemon running? (use --socket or MESHAUTH_SOCKET to point elsewhere)\n  cause: ${err.message}`,
        );
      case grpc.status.PERMISSION_DENIED:
        return new CliError(`meshauthd on ${where} refused the request: ${err.message}`);
      case grpc.status.INVALID_ARGUMENT:
        return new CliError(`invalid request: ${err.message}`, 2);
      default:
        return new CliError(err.message);
    }
  }
  return new CliError((err as Error).message ?? String(err));
}
