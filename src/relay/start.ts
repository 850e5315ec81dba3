import { X509Certificate } from 'node:crypto';
import { startApiServer, type ApiServer, type ApiClientTls } from '../api/index.js';
import { AuditStore, AuditWriter, Witness, type WitnessOptions } from '../audit/index.js';
import { ConfigError } from '../config/index.js';
import { fileErrorReason } from '../errors.js';
import type { Logger } from '../log.js';
import {
  parseCertificates,
  parsePrivateKey,
  parseSpiffeId,
  toPem,
  type TrustBundles,
} from '../spiffe/index.js';
import type { Clock } from '../time.js';
import { tcpNodeApi, type NodeApi, type RelayNode } from './node-api.js';
import { Relay } from './relay.js';
import { relayAuditHandlers } from './service.js';
import { readInputFileSync } from '../read-file.js';

export interface RelayTls {
  /** The relay's X509-SVID chain (PEM, leaf first) and key (PEM): re-read on every refresh. */
  certFile: string;
  keyFile: string;
  /** CA certificates (PEM) of the trust bundle: node and client certificates must chain to them. */
  bundleFile: string;
}

export interface StartRelayOptions {
  /** host and port of the relay's own TCP API (mTLS). Port 0 = any free port. */
  listen: { host: string; port: number };
  tls: RelayTls;
  /**
   * Query clients: SPIFFE IDs allowed to call meshauth.v1.Audit and Witness/ListWitnessedHeads
   * (operators, `meshauth --relay`, `audit verify --witnesses`). They cannot submit heads.
   */
  allow: readonly string[];
  /**
   * Nodes: SPIFFE IDs allowed to call Witness/SubmitHead, besides the SPIFFE ID pinned for each
   * node of `nodes` (a node the relay queries under a known ID may hand it its heads). They reach
   * no other method: a node's SVID does not read the cluster's audit trail.
   */
  witnessAllow?: readonly string[];
  /** Witness limits (clock skew, refusals recorded per submitter); see WitnessOptions. */
  witness?: Pick<WitnessOptions, 'maxSkewMs' | 'refusalLimit'>;
  /** The nodes now; re-read on every request. */
  nodes: () => readonly RelayNode[];
  /** The relay's own audit trail, where the heads it witnesses are recorded. */
  auditPath: string;
  nodeDeadlineMs?: number;
  followRetryMs?: number;
  /** Connect to a node (default: its mTLS TCP API with the relay's SVID). */
  connect?: (node: RelayNode) => NodeApi;
  clock?: Clock;
  logger?: Logger;
}

export interface RelayServer {
  readonly port: number;
  readonly relay: Relay;
  readonly spiffeId: string;
  close(): Promise<void>;
}

/** The relay's SPIFFE ID and trust bundles from its files. */
export function readRelayTls(tls: RelayTls): {
  spiffeId: string;
  bundles: TrustBundles;
  client: ApiClientTls;
} {
  // each file is named in the error: OpenSSL's own messages ("DECODER routines::unsupported") do not
  const named = <T>(file: string, what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw new Error(`${file}: ${what}: ${(err as Error).message}`, { cause: err });
    }
  };
  // a file that cannot be read: the reason once, without Node's repetition of the path
  const read = (flag: string, file: string): Buffer => {
    try {
      return readInputFileSync(file);
    } catch (err) {
      throw new Error(`${flag} ${file}: ${fileErrorReason(err)}`, { cause: err });
    }
  };
  const certChainPem = read('--tls-cert', tls.certFile);
  const keyPem = read('--tls-key', tls.keyFile);
  const bundlePem = read('--tls-bundle', tls.bundleFile);
  const cas = named(tls.bundleFile, 'not a PEM certificate bundle', () => parseCertificates(bundlePem));
  if (cas.length === 0) throw new Error(`${tls.bundleFile}: the trust bundle holds no certificate`);
  const [leaf] = named(tls.certFile, 'not a PEM certificate chain', () => parseCertificates(certChainPem));
  if (!leaf) throw new Error(`${tls.certFile}: holds no certificate`);
  const leafCert = named(tls.certFile, 'not an X.509 certificate', () => new X509Certificate(leaf));
  const key = named(tls.keyFile, 'not a PEM private key', () => parsePrivateKey(keyPem));
  if (!leafCert.checkPrivateKey(key))
    throw new Error(`${tls.keyFile}: the private key does not belong to the certificate in ${tls.certFile}`);
  const uri = (leafCert.subjectAltName ?? '').split(', ').find((s) => s.startsWith('URI:spiffe://'));
  if (!uri) throw new Error(`${tls.certFile}: not an X509-SVID (no SPIFFE ID)`);
  const spiffeId = uri.slice(4);
  const td = parseSpiffeId(spiffeId).trustDomain.name;
  return {
    spiffeId,
    bundles: new Map([[td, cas]]),
    client: { certChainPem, keyPem, caPem: Buffer.from(toPem(cas)) },
  };
}

/**
 * Start meshauth-relay: meshauth.v1.Audit for the whole cluster (see Relay) and meshauth.v1.Witness
 * (the relay witnesses nodes' signed audit heads in its own trail), on one mTLS TCP listener with
 * two allow-lists: query clients (`allow`) and nodes submitting heads (`witnessAllow`). Throws
 * ConfigError when a TLS file is missing or invalid, other errors when serving fails.
 */
export async function startRelay(opts: StartRelayOptions): Promise<RelayServer> {
  let first: ReturnType<typeof readRelayTls>;
  try {
    first = readRelayTls(opts.tls);
  } catch (err) {
    // the TLS files come from the command line: a configuration error (exit 2), not a runtime one
    throw new ConfigError([(err as Error).message], { cause: err });
  }
  let current = first;
  const refresh = () => {
    try {
      current = readRelayTls(opts.tls);
    } catch (err) {
      opts.logger?.warn({ event: 'relay_tls_reload_failed', err }, 'kept the previous SVID and bundle');
    }
    return current;
  };
  const relay = new Relay({
    nodes: opts.nodes,
    connect:
      opts.connect ?? ((node) => tcpNodeApi(node, () => refresh().client, opts.nodeDeadlineMs ?? 5_000)),
    ...(opts.nodeDeadlineMs !== undefined ? { nodeDeadlineMs: opts.nodeDeadlineMs } : {}),
    ...(opts.followRetryMs !== undefined ? { followRetryMs: opts.followRetryMs } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  const store = AuditStore.open({ path: opts.auditPath });
  const writer = new AuditWriter(store, opts.logger ? { logger: opts.logger } : {});
  const witness = new Witness({
    sink: writer,
    store,
    bundles: () => current.bundles,
    selfId: first.spiffeId,
    ...(opts.witness ?? {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  const witnessAllow = opts.witnessAllow ?? [];
  const submitters = (): ReadonlySet<string> => {
    const ids = new Set(witnessAllow);
    for (const n of opts.nodes()) if (n.spiffeId) ids.add(n.spiffeId);
    return ids;
  };
  let api: ApiServer;
  try {
    api = await startApiServer({
      auditHandlers: relayAuditHandlers(relay, opts.logger),
      witness: {
        submit: (env, submitter) => {
          const r = witness.submit(env, submitter);
          // recorded before the answer: a head the relay acknowledged is on disk
          writer.flush();
          return r;
        },
        list: (id, limit) => witness.list(id, limit),
      },
      unix: false,
      tcp: {
        host: opts.listen.host,
        port: opts.listen.port,
        svid: () => {
          const c = refresh().client;
          return { certChainPem: c.certChainPem, keyPem: c.keyPem };
        },
        bundles: () => new Map([...current.bundles].map(([td, d]) => [td, [...d]])),
        allow: opts.allow,
        submitAllow: submitters,
      },
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  } catch (err) {
    relay.close();
    await writer.close();
    store.close();
    throw err;
  }
  let closed: Promise<void> | undefined;
  return {
    port: api.tcpPort!,
    relay,
    spiffeId: first.spiffeId,
    close: () =>
      (closed ??= (async () => {
        await api.close();
        relay.close();
        witness.close();
        await writer.close();
        store.close();
      })()),
  };
}
