import * as z from 'zod';
import {
  boolField,
  durationField,
  enumField,
  fileModeField,
  hostPortField,
  optionalHttpUrlField,
  intField,
  interfaceField,
  ipField,
  numberField,
  fractionOrOffField,
  optionalStringField,
  powerOfTwoField,
  spiffeIdField,
  spiffeIdTemplateField,
  stringField,
} from './fields.js';
import { formatDuration } from './duration.js';
import { parsePrefix } from '../net/index.js';
import { normalizeIp, parseCidr, showValue } from './validate.js';

/** Defaults, shared by the schema and `describeOptions()`. */
export const DEFAULTS = {
  stateDir: '/var/lib/meshauth',
  bpfPinDir: '/sys/fs/bpf/meshauth',
  signalThrottle: '250ms',
  synRto: '8ms',
  handshakeListen: '0.0.0.0',
  handshakePort: 4250,
  handshakeTimeout: '5s',
  handshakeMaxConnections: 256,
  handshakePerPeerRate: 50,
  handshakePerPeerBurst: 100,
  handshakeMaxEntryTtl: '1h',
  // Map sizes: the defaults compiled into bpf/meshauth.bpf.o (bpf/meshauth.h).
  mapAuth: 65536,
  mapIpcache: 65536,
  mapPolicy: 16384,
  mapThrottle: 65536,
  mapSignalRingBytes: 1024 * 1024,
  authMaxConcurrent: 16,
  authQueueSize: 4096,
  authRetryBase: '200ms',
  authRetryMax: '30s',
  authReauthAt: 0.8,
  authGcInterval: '5s',
  authMode: 'per-pair',
  authChannelPort: 4253,
  authChannelNodeId: 'spiffe://{trustDomain}/meshauth/node/{node}',
  // At most about 350 KiB of heap per channel end (BENCHMARKS.md, node channels): ~350 MiB at the cap.
  authChannelMaxChannels: 1000,
  identitySource: 'dev-ca',
  devCaTrustDomain: 'demo.local',
  devCaSvidTtl: '1h',
  spireAdminSocket: '/run/spire/admin/admin.sock',
  spireMaxMessageBytes: 4 * 1024 * 1024,
  workloadApiAddress: 'unix:///run/spire/agent.sock',
  auditMaxAge: '30d',
  auditMaxEvents: 10_000_000,
  auditWitnessMaxSkew: '5m',
  auditOtlpBatchSize: 512,
  auditOtlpTimeout: '10s',
  apiSocket: '/run/meshauth/api.sock',
  apiSocketMode: '0600',
  metricsListen: '127.0.0.1:9090',
  wireguardInterface: 'meshauth0',
  wireguardListenPort: 51820,
  wireguardUserspaceBinary: 'wireguard-go',
  logLevel: 'info',
  kubernetesSpiffeIdTemplate: 'spiffe://{trustDomain}/ns/{namespace}/sa/{serviceAccount}',
  kubernetesNodeAddressType: 'InternalIP',
} as const;

/**
 * Bounds of every duration setting, in milliseconds, by config path. The upper bounds keep each
 * value where it still means what the setting says (a 100-day handshake deadline is a typo) and,
 * for the durations that arm a timer, under Node's timer limit (2^31 - 1 ms, about 24.8 days: a
 * longer timeout fires at once). The lower bounds refuse values that leave the daemon useless or
 * busy with itself:
 * - `handshake.timeout` >= 100 ms: a TLS 1.3 handshake with certificate checks and a signature
 *   takes milliseconds of CPU plus a round trip; below that every handshake times out;
 * - `datapath.signalThrottle` >= 10 ms: at most 100 auth-required signals per second per pair
 *   (the ring buffer and the handshake queue are shared by all pairs);
 * - `auth.retryBase` / `auth.retryMax` >= 10 ms: a retry sooner meets the same failure and only
 *   loads the peer;
 * - `auth.gcInterval` >= 100 ms: each run walks the whole auth map (65,536 entries by default) and
 *   checks the pins; entry expiry itself is enforced by the kernel, not by the GC.
 * `meshauthd --help` prints them (options.ts); the Helm chart checks the same bounds
 * (deploy/helm/meshauth/templates/_helpers.tpl).
 */
export const DURATION_LIMITS = {
  'datapath.signalThrottle': { minMs: 10, maxMs: 60_000 },
  'datapath.synRto': { minMs: 1, maxMs: 1000 },
  'handshake.timeout': { minMs: 100, maxMs: 300_000 },
  'handshake.maxEntryTtl': { minMs: 1000, maxMs: 7 * 86_400_000 },
  'auth.retryBase': { minMs: 10, maxMs: 60_000 },
  'auth.retryMax': { minMs: 10, maxMs: 3_600_000 },
  'auth.gcInterval': { minMs: 100, maxMs: 3_600_000 },
  'identity.devCa.svidTtl': { minMs: 60_000, maxMs: 7 * 86_400_000 },
  'audit.maxAge': { minMs: 60_000, maxMs: 3650 * 86_400_000 },
  'audit.headInterval': { minMs: 1000, maxMs: 86_400_000 },
  'audit.witnessMaxSkew': { minMs: 1000, maxMs: 86_400_000 },
  'audit.otlpTimeout': { minMs: 100, maxMs: 300_000 },
} as const satisfies Record<string, { minMs: number; maxMs: number }>;

export const SOURCES = ['file', 'kubernetes'] as const;

export const IDENTITY_SOURCES = ['dev-ca', 'spire-delegated', 'workload-api', 'files'] as const;
/** auth.mode: one TLS handshake per identity pair, or node channels with RFC 9261 identity proofs. */
export const AUTH_MODES = ['per-pair', 'channel'] as const;
/**
 * kubernetes.nodeAddressType: the Node status.addresses types that hold an IP address (the
 * handshake and WireGuard endpoint); a name of another type (Hostname, InternalDNS) or a typo would
 * leave every node without an address, found only once the informer runs.
 */
export const NODE_ADDRESS_TYPES = ['InternalIP', 'ExternalIP'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const HOOKS = ['ingress', 'egress'] as const;

/** Placeholders of kubernetes.spiffeIdTemplate (src/kubernetes/pod.ts fills them). */
const TEMPLATE_PLACEHOLDERS: readonly string[] = [
  'trustDomain',
  'namespace',
  'serviceAccount',
  'podName',
  'nodeName',
];

/**
 * A problem of two or more settings together (no value is wrong alone): reported as a conflict
 * between `fields` (config paths, the first is where the issue sits), each with where its value
 * came from (yaml-document.ts validateDocument). Only from the top-level refinement, so that the
 * issue path is the first field's full path.
 */
function conflict(
  ctx: z.RefinementCtx,
  fields: readonly [string, string, ...string[]],
  message: string,
): void {
  ctx.addIssue({ code: 'custom', path: fields[0].split('.'), message, params: { conflict: fields } });
}

/** A TCP listener of the daemon, for the port conflict check. */
interface Listener {
  field: string;
  host: string;
  port: number;
}

/**
 * Whether two TCP listen addresses would contend for one port on Linux: equal addresses; the IPv4
 * wildcard `0.0.0.0` with any IPv4 address (IPv4-mapped IPv6 counts as IPv4); the IPv6 wildcard
 * `::` with anything (it is dual-stack unless IPV6_V6ONLY, which meshauth does not set); a host
 * name with anything (it may resolve to the other address). A specific IPv6 address and
 * `0.0.0.0` bind side by side.
 */
export function addressesOverlap(a: string, b: string): boolean {
  const na = normalizeIp(a);
  const nb = normalizeIp(b);
  if (na === undefined || nb === undefined) return true;
  if (na === nb || na === '::' || nb === '::') return true;
  const v4 = (ip: string): boolean => !ip.includes(':');
  return (na === '0.0.0.0' && v4(nb)) || (nb === '0.0.0.0' && v4(na));
}

/** A missing section is parsed as an empty mapping, so its fields get their defaults. */
const EMPTY_SECTION = {} as never;

const NODE_NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export const nodeNameField = () =>
  z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
      if (v === undefined) {
        ctx.addIssue({ code: 'custom', message: 'is required' });
        return z.NEVER;
      }
      if (typeof v !== 'string' || !NODE_NAME_RE.test(v)) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a node name of lower-case letters, digits, "-" and "." (got ${showValue(v)})`,
        });
        return z.NEVER;
      }
      return v;
    });

const tcAttach = z.strictObject({
  type: z.literal('tc'),
  interface: interfaceField(),
  hook: enumField(HOOKS),
  /** Defaults to the hook: an uplink's egress sees local sources, its ingress local destinations. */
  semantics: enumField(HOOKS).optional(),
});

const cgroupAttach = z.strictObject({
  type: z.literal('cgroup'),
  path: stringField(),
  hook: enumField(HOOKS, 'egress'),
});

/** cgroup v2 directory whose sockets get a short initial SYN timeout while their pair is unauthenticated. */
const sockOpsAttach = z.strictObject({
  type: z.literal('sockops'),
  path: stringField(),
});

/**
 * wireguard.address: this node's own address on the tunnel, a host prefix (/32 or /128). The
 * interface carries only it: peers' traffic is routed by their pod CIDRs (AllowedIPs), so a
 * wider prefix would add a connected route for a subnet no peer owns. A bare address is that
 * host prefix ("10.99.0.1" is "10.99.0.1/32", "fd00:99::1" is "fd00:99::1/128"), so one setting
 * (the Helm chart's default, the node's status.hostIP) fits IPv4 and IPv6 nodes alike.
 */
const tunnelAddressField = () =>
  z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
      if (typeof v === 'string' && !v.includes('/')) {
        const ip = normalizeIp(v);
        if (ip !== undefined) v = `${ip}/${ip.includes(':') ? 128 : 32}`;
      }
      const c = typeof v === 'string' ? parseCidr(v) : undefined;
      if (!c || c.prefix !== (c.family === 4 ? 32 : 128)) {
        // the library's reason (no prefix length, bad length, not an address); a shorter prefix
        // is named as such
        const p =
          typeof v === 'string' ? parsePrefix(v.trim(), { hostBits: 'clear', mapped: 'unmap' }) : undefined;
        const why =
          p && !p.ok ? `: ${p.reason}` : p?.ok ? `: a /${p.value.length} is a subnet, not one address` : '';
        ctx.addIssue({
          code: 'custom',
          message: `must be this node's tunnel address as /32 (IPv4) or /128 (IPv6), like 10.99.0.1/32 or fd00:99::1/128 (got ${showValue(v)}${why})`,
        });
        return z.NEVER;
      }
      return v as string;
    });

export const configSchema = z
  .strictObject({
    node: nodeNameField(),
    stateDir: stringField(DEFAULTS.stateDir),
    bpf: z
      .strictObject({
        pinDir: stringField(DEFAULTS.bpfPinDir),
        object: optionalStringField(),
      })
      .prefault(EMPTY_SECTION),
    datapath: z
      .strictObject({
        attach: z.array(z.discriminatedUnion('type', [tcAttach, cgroupAttach, sockOpsAttach])).min(1),
        signalThrottle: durationField(DEFAULTS.signalThrottle, DURATION_LIMITS['datapath.signalThrottle']),
        strictWireguard: boolField(false),
        synReplay: boolField(true),
        // Upper bounds keep one map's memory under a few hundred MiB (kernel limit: 2^32 - 1).
        maps: z
          .strictObject({
            auth: intField(16, 16_777_216, DEFAULTS.mapAuth),
            ipcache: intField(16, 16_777_216, DEFAULTS.mapIpcache),
            policy: intField(16, 16_777_216, DEFAULTS.mapPolicy),
            throttle: intField(16, 16_777_216, DEFAULTS.mapThrottle),
            signalRingBytes: powerOfTwoField(4096, 1 << 30, DEFAULTS.mapSignalRingBytes),
          })
          .prefault(EMPTY_SECTION),
        synRto: durationField(DEFAULTS.synRto, DURATION_LIMITS['datapath.synRto']),
      })
      .prefault(EMPTY_SECTION),
    handshake: z
      .strictObject({
        listen: ipField(DEFAULTS.handshakeListen),
        port: intField(1, 65535, DEFAULTS.handshakePort),
        timeout: durationField(DEFAULTS.handshakeTimeout, DURATION_LIMITS['handshake.timeout']),
        maxConnections: intField(1, 1_000_000, DEFAULTS.handshakeMaxConnections),
        perPeerRate: numberField(0, 1_000_000, DEFAULTS.handshakePerPeerRate),
        perPeerBurst: intField(1, 1_000_000, DEFAULTS.handshakePerPeerBurst),
        maxEntryTtl: durationField(DEFAULTS.handshakeMaxEntryTtl, DURATION_LIMITS['handshake.maxEntryTtl']),
      })
      .prefault(EMPTY_SECTION),
    auth: z
      .strictObject({
        maxConcurrent: intField(1, 100_000, DEFAULTS.authMaxConcurrent),
        queueSize: intField(1, 10_000_000, DEFAULTS.authQueueSize),
        retryBase: durationField(DEFAULTS.authRetryBase, DURATION_LIMITS['auth.retryBase']),
        retryMax: durationField(DEFAULTS.authRetryMax, DURATION_LIMITS['auth.retryMax']),
        reauthAt: fractionOrOffField(0.99, DEFAULTS.authReauthAt),
        gcInterval: durationField(DEFAULTS.authGcInterval, DURATION_LIMITS['auth.gcInterval']),
        preauthenticate: boolField(false),
        mode: enumField(AUTH_MODES, DEFAULTS.authMode as (typeof AUTH_MODES)[number]),
        channel: z
          .strictObject({
            port: intField(1, 65535, DEFAULTS.authChannelPort),
            nodeId: stringField(DEFAULTS.authChannelNodeId).refine(
              (t) => /^spiffe:\/\/[^/]+\/\S*\{node\}/.test(t) && !/\s/.test(t),
              { message: 'must be a spiffe:// ID template whose path contains {node}' },
            ),
            maxChannels: intField(1, 1_000_000, DEFAULTS.authChannelMaxChannels),
          })
          .prefault(EMPTY_SECTION),
      })
      .prefault(EMPTY_SECTION),
    identity: z
      .strictObject({
        source: enumField(IDENTITY_SOURCES, DEFAULTS.identitySource),
        devCa: z
          .strictObject({
            trustDomain: stringField(DEFAULTS.devCaTrustDomain),
            caCert: optionalStringField(),
            caKey: optionalStringField(),
            svidTtl: durationField(DEFAULTS.devCaSvidTtl, DURATION_LIMITS['identity.devCa.svidTtl']),
          })
          .prefault(EMPTY_SECTION),
        spire: z
          .strictObject({
            adminSocket: stringField(DEFAULTS.spireAdminSocket),
            maxMessageBytes: intField(64 * 1024, 256 * 1024 * 1024, DEFAULTS.spireMaxMessageBytes),
          })
          .prefault(EMPTY_SECTION),
        workloadApi: z
          .strictObject({
            address: stringField(DEFAULTS.workloadApiAddress),
          })
          .prefault(EMPTY_SECTION),
        files: z
          .strictObject({
            bundle: stringField(),
            svids: z
              .array(z.strictObject({ spiffeId: spiffeIdField(), cert: stringField(), key: stringField() }))
              .min(1),
          })
          .optional(),
      })
      .prefault(EMPTY_SECTION)
      .superRefine((id, ctx) => {
        if (!/^[a-z0-9._-]+$/.test(id.devCa.trustDomain)) {
          ctx.addIssue({
            code: 'custom',
            path: ['devCa', 'trustDomain'],
            message: `must be a trust domain of a-z 0-9 . - _ (got ${showValue(id.devCa.trustDomain)})`,
          });
        }
      }),
    inventory: z.strictObject({ source: enumField(SOURCES, 'file'), file: optionalStringField() }),
    policy: z.strictObject({ source: enumField(SOURCES, 'file'), file: optionalStringField() }),
    kubernetes: z
      .strictObject({
        kubeconfig: optionalStringField(),
        trustDomain: optionalStringField(),
        spiffeIdTemplate: stringField(DEFAULTS.kubernetesSpiffeIdTemplate),
        nodeAddressType: enumField(NODE_ADDRESS_TYPES, DEFAULTS.kubernetesNodeAddressType),
        publishWireguardKey: boolField(true),
        reportPolicyStatus: boolField(true),
      })
      .prefault(EMPTY_SECTION)
      .superRefine((k, ctx) => {
        // the trust domain of every pod's SPIFFE ID: a bad one would be found per pod, at run time
        if (k.trustDomain !== undefined && !/^[a-z0-9._-]+$/.test(k.trustDomain)) {
          ctx.addIssue({
            code: 'custom',
            path: ['trustDomain'],
            message: `must be a trust domain of a-z 0-9 . - _ (got ${showValue(k.trustDomain)})`,
          });
        }
        for (const m of k.spiffeIdTemplate.matchAll(/\{([^}]*)\}/g)) {
          if (!TEMPLATE_PLACEHOLDERS.includes(m[1] as string)) {
            ctx.addIssue({
              code: 'custom',
              path: ['spiffeIdTemplate'],
              message: `unknown placeholder {${m[1]}} (known: ${TEMPLATE_PLACEHOLDERS.map((x) => `{${x}}`).join(', ')})`,
            });
          }
        }
      }),
    audit: z
      .strictObject({
        path: optionalStringField(),
        maxAge: durationField(DEFAULTS.auditMaxAge, DURATION_LIMITS['audit.maxAge']),
        maxEvents: intField(1000, Number.MAX_SAFE_INTEGER, DEFAULTS.auditMaxEvents),
        witnesses: z
          .array(hostPortField(undefined))
          .default([])
          .superRefine((list, ctx) => {
            const seen = new Set<string>();
            list.forEach((w, i) => {
              const key = w ? `${w.host}:${w.port}` : '';
              if (seen.has(key))
                ctx.addIssue({ code: 'custom', path: [i], message: `${key} is listed twice` });
              seen.add(key);
            });
          }),
        headInterval: durationField('60s', DURATION_LIMITS['audit.headInterval']),
        witnessMaxSkew: durationField(DEFAULTS.auditWitnessMaxSkew, DURATION_LIMITS['audit.witnessMaxSkew']),
        otlpEndpoint: optionalHttpUrlField(),
        otlpBatchSize: intField(1, 10_000, DEFAULTS.auditOtlpBatchSize),
        otlpTimeout: durationField(DEFAULTS.auditOtlpTimeout, DURATION_LIMITS['audit.otlpTimeout']),
      })
      .prefault(EMPTY_SECTION),
    api: z
      .strictObject({
        socket: stringField(DEFAULTS.apiSocket),
        socketMode: fileModeField(DEFAULTS.apiSocketMode, {
          noOtherAccess: {
            why: 'any local user could then call the API (read the audit trail, flush auth entries, have heads signed)',
          },
        }),
        tcp: z
          .strictObject({
            listen: hostPortField(undefined),
            allowedIds: z.array(spiffeIdField()).min(1),
            // one DaemonSet config for every node: {node} makes each node's ID its own
            identity: spiffeIdTemplateField().optional(),
          })
          .optional(),
      })
      .prefault(EMPTY_SECTION),
    metrics: z
      .strictObject({ listen: hostPortField(DEFAULTS.metricsListen, { allowEmpty: true }) })
      .prefault(EMPTY_SECTION),
    wireguard: z
      .strictObject({
        enabled: boolField(false),
        interface: interfaceField(DEFAULTS.wireguardInterface),
        listenPort: intField(1, 65535, DEFAULTS.wireguardListenPort),
        address: tunnelAddressField().optional(),
        privateKeyFile: optionalStringField(),
        userspaceBinary: stringField(DEFAULTS.wireguardUserspaceBinary),
      })
      .prefault(EMPTY_SECTION),
    log: z.strictObject({ level: enumField(LOG_LEVELS, DEFAULTS.logLevel) }).prefault(EMPTY_SECTION),
  })
  .superRefine((c, ctx) => {
    // Settings that are each valid but do not go together: named as a conflict between them.
    if (c.datapath.strictWireguard && !c.wireguard.enabled) {
      conflict(
        ctx,
        ['datapath.strictWireguard', 'wireguard.enabled'],
        'strictWireguard drops pod traffic between nodes that did not come through WireGuard: it needs wireguard.enabled: true',
      );
    }
    if (c.wireguard.enabled && c.wireguard.address === undefined) {
      conflict(
        ctx,
        ['wireguard.address', 'wireguard.enabled'],
        "wireguard.enabled: true needs wireguard.address (this node's tunnel address, like 10.99.0.1/32)",
      );
    }
    for (const doc of ['inventory', 'policy'] as const) {
      if (c[doc].source === 'file' && c[doc].file === undefined) {
        conflict(ctx, [`${doc}.file`, `${doc}.source`], `${doc}.source "file" needs ${doc}.file`);
      }
    }
    if (c.auth.retryMax < c.auth.retryBase) {
      conflict(
        ctx,
        ['auth.retryMax', 'auth.retryBase'],
        `auth.retryMax (${formatDuration(c.auth.retryMax)}) must be at least auth.retryBase (${formatDuration(c.auth.retryBase)})`,
      );
    }
    if (c.identity.source === 'files' && !c.identity.files) {
      conflict(
        ctx,
        ['identity.files', 'identity.source'],
        'identity.source "files" needs identity.files (bundle and svids)',
      );
    }
    if ((c.identity.devCa.caCert === undefined) !== (c.identity.devCa.caKey === undefined)) {
      conflict(
        ctx,
        ['identity.devCa.caCert', 'identity.devCa.caKey'],
        'the development CA certificate and its key are given together or not at all',
      );
    }
    if (c.auth.mode === 'channel' && c.identity.source !== 'dev-ca') {
      // Only the dev CA names the trust domain itself; other sources need it written out.
      for (const [field, value] of [
        ['api.tcp.identity', c.api.tcp?.identity],
        ['auth.channel.nodeId', c.auth.channel.nodeId],
      ] as const) {
        if (value?.includes('{trustDomain}')) {
          conflict(
            ctx,
            [field, 'identity.source', 'auth.mode'],
            `with auth.mode "channel" and identity.source "${c.identity.source}", ${field} must name the trust domain, not {trustDomain} (only the dev CA fills it in)`,
          );
        }
      }
    }
    // Every TCP listener binds its own port: two on one port (on overlapping addresses) would fail
    // at start with EADDRINUSE, which names neither setting.
    const listeners: Listener[] = [
      { field: 'handshake.port', host: c.handshake.listen, port: c.handshake.port },
    ];
    if (c.auth.mode === 'channel')
      listeners.push({ field: 'auth.channel.port', host: c.handshake.listen, port: c.auth.channel.port });
    if (c.api.tcp?.listen) listeners.push({ field: 'api.tcp.listen', ...c.api.tcp.listen });
    if (c.metrics.listen) listeners.push({ field: 'metrics.listen', ...c.metrics.listen });
    listeners.forEach((a, i) => {
      for (const b of listeners.slice(0, i)) {
        if (a.port === b.port && addressesOverlap(a.host, b.host)) {
          conflict(
            ctx,
            [a.field, b.field],
            `both would listen on TCP port ${a.port}${a.host === b.host ? '' : ` (addresses ${a.host} and ${b.host} overlap)`}: give each its own port`,
          );
        }
      }
    });
    // The head is signed with the TCP listener's SVID: without it nothing would be witnessed, and
    // an operator who listed witnesses would believe the trail is witnessed when it is not.
    if (c.audit.witnesses.length > 0 && !c.api.tcp?.identity) {
      conflict(
        ctx,
        ['audit.witnesses', 'api.tcp.identity'],
        'witnesses need api.tcp.identity (the SVID that signs the audit head)',
      );
    }
  });

export type ParsedConfig = z.output<typeof configSchema>;
