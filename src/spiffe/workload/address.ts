import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { WorkloadEndpointError } from './errors.js';

/** Environment variable naming the Workload API endpoint (SPIFFE standard). */
export const SPIFFE_ENDPOINT_SOCKET_ENV = 'SPIFFE_ENDPOINT_SOCKET';

/** A parsed Workload API (or SPIRE admin) endpoint. */
export interface WorkloadEndpoint {
  kind: 'unix' | 'tcp';
  /** Socket path (unix) or "ip:port" (tcp, IPv6 in brackets). */
  address: string;
  /** The channel target understood by @grpc/grpc-js. */
  grpcTarget: string;
  /** The canonical form: unix:///path or tcp://ip:port. */
  uri: string;
}

function fail(addr: string, why: string): never {
  throw new WorkloadEndpointError(`parse workload endpoint "${addr}": ${why}`);
}

/**
 * Parse an endpoint address: `unix:///absolute/path`, `tcp://<IP>:<port>` (the forms of the SPIFFE
 * Workload Endpoint standard), or a bare absolute socket path. Host names are not accepted for tcp.
 */
export function parseWorkloadEndpoint(addr: string): WorkloadEndpoint {
  const text = addr.trim();
  if (text === '') fail(addr, 'address is empty');
  if (text.startsWith('/')) return unixEndpoint(addr, text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    fail(addr, 'not a URI (expected unix:///path or tcp://ip:port)');
  }
  if (url.search !== '' || text.includes('?')) fail(addr, 'must not include a query');
  if (url.hash !== '' || text.includes('#')) fail(addr, 'must not include a fragment');
  if (url.username !== '' || url.password !== '') fail(addr, 'must not include user info');
  switch (url.protocol) {
    case 'unix:': {
      if (!text.startsWith('unix://')) fail(addr, 'unix socket URI must not be opaque (use unix:///path)');
      if (url.host !== '') fail(addr, 'unix socket URI must not include an authority (use unix:///path)');
      const path = decodeURIComponent(url.pathname);
      if (path === '' || path === '/') fail(addr, 'unix socket URI must include a path');
      return unixEndpoint(addr, path);
    }
    case 'tcp:': {
      if (url.pathname !== '' && url.pathname !== '/') fail(addr, 'tcp URI must not include a path');
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      const family = isIP(host);
      if (family === 0) fail(addr, 'tcp URI host must be an IP address');
      if (url.port === '') fail(addr, 'tcp URI must include a port');
      const hostPort = family === 6 ? `[${host}]:${url.port}` : `${host}:${url.port}`;
      return {
        kind: 'tcp',
        address: hostPort,
        grpcTarget: `ipv${family}:${hostPort}`,
        uri: `tcp://${hostPort}`,
      };
    }
    default:
      fail(addr, `unsupported scheme "${url.protocol.replace(/:$/, '')}" (expected unix or tcp)`);
  }
}

function unixEndpoint(addr: string, path: string): WorkloadEndpoint {
  if (!isAbsolute(path)) fail(addr, 'socket path must be absolute');
  return { kind: 'unix', address: path, grpcTarget: `unix://${path}`, uri: `unix://${path}` };
}

/**
 * The endpoint from an explicit address (wins) or from SPIFFE_ENDPOINT_SOCKET. Throws when neither
 * is set.
 */
export function resolveWorkloadEndpoint(
  address: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): WorkloadEndpoint {
  if (address !== undefined && address.trim() !== '') return parseWorkloadEndpoint(address);
  const fromEnv = env[SPIFFE_ENDPOINT_SOCKET_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== '') return parseWorkloadEndpoint(fromEnv);
  throw new WorkloadEndpointError(
    `resolve workload endpoint: no address configured and ${SPIFFE_ENDPOINT_SOCKET_ENV} is not set`,
  );
}
