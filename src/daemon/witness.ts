import type { Logger } from 'pino';
import { ApiClient, type WitnessView } from '../api/index.js';
import {
  HeadPublisher,
  Witness,
  type AuditSink,
  type AuditStore,
  type WitnessObserver,
} from '../audit/index.js';
import type { DaemonConfig } from '../config/index.js';
import { toPem, type TrustBundles } from '../spiffe/index.js';

export interface DaemonWitnessDeps {
  config: DaemonConfig;
  logger: Logger;
  store: AuditStore;
  sink: AuditSink;
  bundles: () => TrustBundles;
  /** The SPIFFE ID the TCP listener presents (api.tcp.identity) and its current SVID. */
  self?: { spiffeId: string; svid: () => { certChainPem: string; keyPem: string } | undefined };
  /** Counts refused heads (meshauth_witness_heads_refused_total). */
  observer?: WitnessObserver;
}

export interface DaemonWitness {
  view: WitnessView;
  publisher: HeadPublisher | undefined;
  close(): void;
}

/**
 * Witnessed audit heads on a node: the Witness that records other nodes' signed heads, and (with
 * api.tcp.identity and audit.witnesses set) the HeadPublisher that signs this node's head with
 * that SVID and submits it to every witness over their TCP API.
 */
export function daemonWitness(deps: DaemonWitnessDeps): DaemonWitness {
  const log = deps.logger.child({ component: 'witness' });
  const witness = new Witness({
    sink: deps.sink,
    store: deps.store,
    bundles: deps.bundles,
    maxSkewMs: deps.config.audit.witnessMaxSkewMs,
    ...(deps.observer ? { observer: deps.observer } : {}),
    ...(deps.self ? { selfId: deps.self.spiffeId } : {}),
  });
  const self = deps.self;
  const svid = () => {
    const s = self?.svid();
    return s ? { chainPem: s.certChainPem, keyPem: s.keyPem } : undefined;
  };
  let publisher: HeadPublisher | undefined;
  if (!self && deps.config.audit.witnesses.length > 0) {
    log.warn(
      { event: 'audit_head_no_identity' },
      'audit.witnesses is set but api.tcp.identity is not: the audit head is not signed or witnessed',
    );
  }
  if (self && deps.config.audit.witnesses.length > 0) {
    publisher = new HeadPublisher({
      store: deps.store,
      spiffeId: self.spiffeId,
      node: deps.config.node,
      svid,
      intervalMs: deps.config.audit.headIntervalMs,
      logger: log,
      witnesses: deps.config.audit.witnesses.map((w) => {
        const address = `${w.host.includes(':') ? `[${w.host}]` : w.host}:${w.port}`;
        return {
          target: address,
          async submit(env) {
            const s = self.svid();
            const cas = [...deps.bundles().values()].flat();
            if (!s || cas.length === 0) throw new Error('no SVID or trust bundle to connect with');
            const client = new ApiClient({
              address,
              timeoutMs: 10_000,
              tls: {
                certChainPem: Buffer.from(s.certChainPem),
                keyPem: Buffer.from(s.keyPem),
                caPem: Buffer.from(toPem(cas)),
              },
            });
            try {
              const r = await client.submitHead(env);
              return { accepted: r.accepted, reason: r.reason, message: r.message };
            } finally {
              client.close();
            }
          },
        };
      }),
    });
    publisher.start();
    log.info(
      { event: 'audit_head_publishing', witnesses: publisher ? deps.config.audit.witnesses.length : 0 },
      'signing the audit head for witnesses',
    );
  }
  const p = publisher;
  return {
    view: {
      submit: (env, submitter) => witness.submit(env, submitter),
      list: (id, limit) => witness.list(id, limit),
      ...(self
        ? {
            signNow: () => {
              const s = svid();
              if (!s) return undefined;
              return new HeadPublisher({
                store: deps.store,
                spiffeId: self.spiffeId,
                node: deps.config.node,
                svid,
                witnesses: [],
              }).signNow();
            },
          }
        : {}),
      ...(p ? { publish: () => p.publish() } : {}),
    },
    publisher,
    close: () => {
      publisher?.close();
      // pending refusal summaries go into the trail before the writer closes
      witness.close();
    },
  };
}
