import { X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { readInputFileSync } from '../read-file.js';
import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ApiClient, ApiClientError, DEFAULT_SOCKET_PATH } from '../api/index.js';
import { fileErrorReason } from '../errors.js';
import { formatDuration, parseDuration } from '../config/index.js';
import { parseCertificates, parsePrivateKey } from '../spiffe/index.js';
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
  // an empty path would resolve to the working directory
  if (g.socket === '') throw new CliError('--socket: must be a path (got "")', 2);
  // MESHAUTH_SOCKET= (set, empty) is as good as unset, as for most variables scripts clear so
  return resolve(g.socket ?? (io.env['MESHAUTH_SOCKET'] || DEFAULT_SOCKET_PATH));
}

/** Longest --timeout accepted, milliseconds (1h). */
const MAX_TIMEOUT_MS = 3_600_000;

/**
 * A CLI duration flag in milliseconds: a duration with its unit (`500ms`, `5s`, `2m`, `1h`) or a
 * bare number of seconds (`5`, `1.5`), the form these flags took first and that scripts pass.
 * Throws CliError (usage, exit 2) naming the flag, the range and the value outside (0, maxMs].
 */
export function cliDurationMs(flag: string, value: string, maxMs: number): number {
  const text = value.trim();
  const ms = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Math.round(Number(text) * 1000) : parseDuration(text);
  if (ms === undefined || !(ms > 0 && ms <= maxMs)) {
    throw new CliError(
      `${flag}: must be a duration greater than 0 and at most ${formatDuration(maxMs)} (e.g. 5s, 500ms; a bare number is seconds) (got ${JSON.stringify(value)})`,
      2,
    );
  }
  return ms;
}

/** --timeout in milliseconds: a duration or a bare number of seconds in (0, 1h]; else exit 2. */
export function timeoutMsOf(g: GlobalOptions): number {
  if (g.timeout === undefined) return 10_000;
  return cliDurationMs('--timeout', g.timeout, MAX_TIMEOUT_MS);
}

/**
 * A TLS file of the global options, read and parsed here so that a wrong file is named (gRPC's own
 * error would only say "PEM routines::no start line"): certificates (--tls-cert, --tls-bundle)
 * must hold at least one X.509 certificate, --tls-key a private key. Usage error (exit 2).
 */
export function readPem(
  flag: string,
  path: string | undefined,
  kind: 'certificates' | 'key',
  neededBy = '--address and --relay need',
): Buffer {
  if (!path) throw new CliError(`${neededBy} ${flag}`, 2);
  let data: Buffer;
  try {
    data = readInputFileSync(path);
  } catch (err) {
    throw new CliError(`${flag} ${path}: ${fileErrorReason(err)}`, 2);
  }
  try {
    if (kind === 'key') parsePrivateKey(data);
    else {
      const certs = parseCertificates(data);
      if (certs.length === 0) throw new Error('no certificate');
      for (const der of certs) new X509Certificate(der);
    }
  } catch (err) {
    throw new CliError(
      `${flag} ${path}: not a PEM ${kind === 'key' ? 'private key' : 'certificate file'} (${(err as Error).message})`,
      2,
    );
  }
  return data;
}

const HOST_PORT_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/;

/** What is wrong with a host:port (port 1..65535), or undefined when nothing is. */
export function hostPortProblem(text: string): string | undefined {
  const m = HOST_PORT_RE.exec(text);
  const port = m ? Number(m[2]) : 0;
  return !m || port < 1 || port > 65535
    ? `must be host:port with a port between 1 and 65535 (got ${JSON.stringify(text)})`
    : undefined;
}

/** host:port of --address or --relay; usage error (exit 2) otherwise. */
export function hostPortOf(flag: string, text: string): string {
  const problem = hostPortProblem(text);
  if (problem) throw new CliError(`${flag}: ${problem}`, 2);
  return text;
}

export function connect(g: GlobalOptions, io: CliIo): ApiClient {
  const timeoutMs = timeoutMsOf(g);
  if (g.address && g.relay)
    throw new CliError('give --address (one node) or --relay (the cluster), not both', 2);
  const address = g.address ?? g.relay;
  if (address) {
    return new ApiClient({
      address: hostPortOf(g.address ? '--address' : '--relay', address),
      timeoutMs,
      tls: {
        certChainPem: readPem('--tls-cert', g.tlsCert, 'certificates'),
        keyPem: readPem('--tls-key', g.tlsKey, 'key'),
        caPem: readPem('--tls-bundle', g.tlsBundle, 'certificates'),
        ...(g.serverId ? { serverSpiffeId: g.serverId } : {}),
      },
    });
  }
  const socket = socketPathOf(g, io);
  // connect(2) to a path that is not a socket fails with ECONNREFUSED, "connection refused",
  // which sends the reader looking for a stopped daemon: say what the path is instead
  const st = statSync(socket, { throwIfNoEntry: false });
  if (st && !st.isSocket()) {
    const kind = st.isDirectory() ? 'a directory' : st.isFile() ? 'a regular file' : 'not a socket';
    const from =
      g.socket !== undefined ? '--socket' : io.env['MESHAUTH_SOCKET'] ? 'MESHAUTH_SOCKET' : 'the API socket';
    throw new CliError(
      `${from} ${socket}: not a Unix socket (${kind}); meshauthd's api.socket is a socket file`,
    );
  }
  return new ApiClient({ socket, timeoutMs });
}

/** What a client talks to, for messages: a node over its socket or TCP API, the relay, a witness. */
export type ApiPeer = 'socket' | 'address' | 'relay' | 'witness';

/** The peer kind of the global options (see connect). */
export function peerOf(g: GlobalOptions): ApiPeer {
  return g.relay && !g.address ? 'relay' : g.address ? 'address' : 'socket';
}

/** How to point the CLI elsewhere, per peer kind: only the options that apply to it. */
const POINT_ELSEWHERE: Record<ApiPeer, string> = {
  socket: 'is meshauthd running? (use --socket or MESHAUTH_SOCKET to point elsewhere)',
  address: 'is meshauthd running with api.tcp.listen at that address? (--address host:port)',
  relay: 'is meshauth-relay running and listening there? (--relay host:port)',
  witness: "is that witness's TCP API listening there? (--witnesses host:port,...)",
};

/** Turn an API failure into a message a person can act on. */
export function explain(err: unknown, client: ApiClient | undefined, peer: ApiPeer = 'socket'): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof ApiClientError) {
    const who = peer === 'relay' ? 'meshauth-relay' : peer === 'witness' ? 'witness' : 'meshauthd';
    const where = client?.target ?? (peer === 'socket' ? 'the daemon' : 'the given address');
    switch (err.grpcCode) {
      case grpc.status.UNAVAILABLE:
      case grpc.status.DEADLINE_EXCEEDED:
        // grpc-js's "Protocol error": something answered, but not in HTTP/2
        if (/^Protocol error\b/.test(err.reason))
          return new CliError(
            `${where} answered, but not as ${who}'s gRPC API: ${err.reason} (another program's socket or port?)`,
          );
        return new CliError(`cannot reach ${who} on ${where}: ${err.reason}\n  ${POINT_ELSEWHERE[peer]}`);
      case grpc.status.PERMISSION_DENIED:
        return new CliError(`${who} on ${where} refused the request: ${err.message}`);
      case grpc.status.INVALID_ARGUMENT:
        return new CliError(`invalid request: ${err.message}`, 2);
      default:
        return new CliError(err.message);
    }
  }
  return new CliError((err as Error).message ?? String(err));
}
