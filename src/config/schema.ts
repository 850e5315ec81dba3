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
  spiffeIdField,
  spiffeIdTemplateField,
  stringField,
} from './fields.js';
import { parseCidr, showValue } from './validate.js';

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

export const SOURCES = ['file', 'kubernetes'] as const;

export const IDENTITY_SOURCES = ['dev-ca', 'spire-delegated', 'workload-api', 'files'] as const;
/** auth.mode: one TLS handshake per identity pair, or node channels with RFC 9261 identity proofs. */
export const AUTH_MODES = ['per-pair', 'channel'] as const;
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

function fileWhenFileSource(v: { source: string; file: string | undefined }, ctx: z.RefinementCtx): void {
  if (v.source === 'file' && v.file === undefined) {
    ctx.addIssue({ code: 'custom', path: ['file'], message: 'is required when source is "file"' });
  }
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

const cidrField = () =>
  z
    .unknown()
    .optional()
    .transform((v, ctx): string => {
      const c = typeof v === 'string' ? parseCidr(v) : undefined;
      if (!c) {
        ctx.addIssue({
          code: 'custom',
          message: `must be an address with a prefix length, like 10.99.0.1/32 (got ${showValue(v)})`,
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
        signalThrottle: durationField(DEFAULTS.signalThrottle),
        strictWireguard: boolField(false),
        synReplay: boolField(true),
        // Upper bounds keep one map's memory under a few hundred MiB (kernel limit: 2^32 - 1).
        maps: z
          .strictObject({
            auth: intField(16, 16_777_216, DEFAULTS.mapAuth),
            ipcache: intField(16, 16_777_216, DEFAULTS.mapIpcache),
            policy: intField(16, 16_777_216, DEFAULTS.mapPolicy),
            throttle: intField(16, 16_777_216, DEFAULTS.mapThrottle),
            signalRingBytes: intField(4096, 1 << 30, DEFAULTS.mapSignalRingBytes).refine(
              (n) => (n & (n - 1)) === 0,
              { message: 'must be a power of two (4096 bytes at least)' },
            ),
          })
          .prefault(EMPTY_SECTION),
        synRto: durationField(DEFAULTS.synRto).refine((ms) => ms >= 1 && ms <= 1000, {
          message: 'must be between 1ms and 1s',
        }),
      })
      .prefault(EMPTY_SECTION),
    handshake: z
      .strictObject({
        listen: ipField(DEFAULTS.handshakeListen),
        port: intField(1, 65535, DEFAULTS.handshakePort),
        timeout: durationField(DEFAULTS.handshakeTimeout),
        maxConnections: intField(1, 1_000_000, DEFAULTS.handshakeMaxConnections),
        perPeerRate: numberField(0, 1_000_000, DEFAULTS.handshakePerPeerRate),
        perPeerBurst: intField(1, 1_000_000, DEFAULTS.handshakePerPeerBurst),
        maxEntryTtl: durationField(DEFAULTS.handshakeMaxEntryTtl, { minMs: 1000 }),
      })
      .prefault(EMPTY_SECTION),
    auth: z
      .strictObject({
        maxConcurrent: intField(1, 100_000, DEFAULTS.authMaxConcurrent),
        queueSize: intField(1, 10_000_000, DEFAULTS.authQueueSize),
        retryBase: durationField(DEFAULTS.authRetryBase),
        retryMax: durationField(DEFAULTS.authRetryMax),
        reauthAt: fractionOrOffField(0.99, DEFAULTS.authReauthAt),
        gcInterval: durationField(DEFAULTS.authGcInterval),
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
      .prefault(EMPTY_SECTION)
      .superRefine((a, ctx) => {
        if (a.retryMax < a.retryBase) {
          ctx.addIssue({
            code: 'custom',
            path: ['retryMax'],
            message: `must be at least auth.retryBase (${a.retryBase}ms)`,
          });
        }
      }),
    identity: z
      .strictObject({
        source: enumField(IDENTITY_SOURCES, DEFAULTS.identitySource),
        devCa: z
          .strictObject({
            trustDomain: stringField(DEFAULTS.devCaTrustDomain),
            caCert: optionalStringField(),
            caKey: optionalStringField(),
            svidTtl: durationField(DEFAULTS.devCaSvidTtl, { minMs: 60_000 }),
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
        if (id.source === 'files' && !id.files) {
          ctx.addIssue({
            code: 'custom',
            path: ['files'],
            message: 'is required when identity.source is "files"',
          });
        }
        if (!/^[a-z0-9._-]+$/.test(id.devCa.trustDomain)) {
          ctx.addIssue({
            code: 'custom',
            path: ['devCa', 'trustDomain'],
            message: `must be a trust domain of a-z 0-9 . - _ (got ${showValue(id.devCa.trustDomain)})`,
          });
        }
        if ((id.devCa.caCert === undefined) !== (id.devCa.caKey === undefined)) {
          ctx.addIssue({
            code: 'custom',
            path: ['devCa'],
            message: 'caCert and caKey must be given together',
          });
        }
      }),
    inventory: z
      .strictObject({ source: enumField(SOURCES, 'file'), file: optionalStringField() })
      .superRefine(fileWhenFileSource),
    policy: z
      .strictObject({ source: enumField(SOURCES, 'file'), file: optionalStringField() })
      .superRefine(fileWhenFileSource),
    kubernetes: z
      .strictObject({
        kubeconfig: optionalStringField(),
        trustDomain: optionalStringField(),
        spiffeIdTemplate: stringField(DEFAULTS.kubernetesSpiffeIdTemplate),
        nodeAddressType: stringField(DEFAULTS.kubernetesNodeAddressType),
        publishWireguardKey: boolField(true),
        reportPolicyStatus: boolField(true),
      })
      .prefault(EMPTY_SECTION)
      .superRefine((k, ctx) => {
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
        maxAge: durationField(DEFAULTS.auditMaxAge, { minMs: 60_000 }),
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
        headInterval: durationField('60s', { minMs: 1000 }),
        witnessMaxSkew: durationField(DEFAULTS.auditWitnessMaxSkew, { minMs: 1000 }).refine(
          (ms) => ms <= 86_400_000,
          { message: 'must be at most 1d' },
        ),
        otlpEndpoint: optionalHttpUrlField(),
        otlpBatchSize: intField(1, 10_000, DEFAULTS.auditOtlpBatchSize),
        otlpTimeout: durationField(DEFAULTS.auditOtlpTimeout, { minMs: 100 }),
      })
      .prefault(EMPTY_SECTION),
    api: z
      .strictObject({
        socket: stringField(DEFAULTS.apiSocket),
        socketMode: fileModeField(DEFAULTS.apiSocketMode),
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
        address: cidrField().optional(),
        privateKeyFile: optionalStringField(),
        userspaceBinary: stringField(DEFAULTS.wireguardUserspaceBinary),
      })
      .prefault(EMPTY_SECTION)
      .superRefine((wg, ctx) => {
        if (wg.enabled && wg.address === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['address'],
            message: 'is required when wireguard.enabled is true',
          });
        }
      }),
    log: z.strictObject({ level: enumField(LOG_LEVELS, DEFAULTS.logLevel) }).prefault(EMPTY_SECTION),
  })
  .superRefine((c, ctx) => {
    if (c.datapath.strictWireguard && !c.wireguard.enabled) {
      ctx.addIssue({
        code: 'custom',
        path: ['datapath', 'strictWireguard'],
        message: 'needs wireguard.enabled: true',
      });
    }
    if (c.auth.mode === 'channel') {
      if (c.auth.channel.port === c.handshake.port) {
        ctx.addIssue({
          code: 'custom',
          path: ['auth', 'channel', 'port'],
          message: `must differ from handshake.port (${c.handshake.port}): both listen`,
        });
      }
      // Only the dev CA names the trust domain itself; other sources need it written out.
      if (c.identity.source !== 'dev-ca' && c.api.tcp?.identity?.includes('{trustDomain}')) {
        ctx.addIssue({
          code: 'custom',
          path: ['api', 'tcp', 'identity'],
          message: `must name the trust domain (not {trustDomain}) with identity.source ${c.identity.source}`,
        });
      }
      if (c.identity.source !== 'dev-ca' && c.auth.channel.nodeId.includes('{trustDomain}')) {
        ctx.addIssue({
          code: 'custom',
          path: ['auth', 'channel', 'nodeId'],
          message: `must name the trust domain (not {trustDomain}) with identity.source ${c.identity.source}`,
        });
      }
    }
    // api.tcp binds every address, like the handshake and channel listeners: one port for two
    // would fail at start with EADDRINUSE, which names neither setting.
    const tcpPort = c.api.tcp?.listen?.port;
    if (tcpPort !== undefined) {
      if (tcpPort === c.handshake.port) {
        ctx.addIssue({
          code: 'custom',
          path: ['api', 'tcp', 'listen'],
          message: `port ${tcpPort} is also handshake.port: both listen`,
        });
      }
      if (c.auth.mode === 'channel' && tcpPort === c.auth.channel.port) {
        ctx.addIssue({
          code: 'custom',
          path: ['api', 'tcp', 'listen'],
          message: `port ${tcpPort} is also auth.channel.port: both listen`,
        });
      }
    }
    // The head is signed with the TCP listener's SVID: without it nothing would be witnessed, and
    // an operator who listed witnesses would believe the trail is witnessed when it is not.
    if (c.audit.witnesses.length > 0 && !c.api.tcp?.identity) {
      ctx.addIssue({
        code: 'custom',
        path: ['audit', 'witnesses'],
        message: 'needs api.tcp.identity (the SVID that signs the audit head)',
      });
    }
  });

export type ParsedConfig = z.output<typeof configSchema>;
