import { formatDuration } from './duration.js';
import { DEFAULTS, DURATION_LIMITS } from './schema.js';

export type OptionKind = 'string' | 'int' | 'number' | 'duration' | 'bool' | 'list' | 'attach';

/** One option of meshauthd, as `meshauthd --help` prints it. */
export interface OptionDescription {
  /** Path in the config file ("handshake.port"); undefined for --config itself. */
  path: string | undefined;
  /** "--handshake-port" */
  flag: string;
  /** Property name commander gives the flag ("handshakePort"). */
  attributeName: string;
  /** "MESHAUTH_HANDSHAKE_PORT" */
  env: string;
  kind: OptionKind;
  /** Placeholder for the value in help text ("<port>"). */
  valueName: string;
  /** Default as text; undefined when required or derived. */
  default: string | undefined;
  description: string;
}

interface Spec {
  path: string;
  kind: OptionKind;
  valueName: string;
  default?: string | number | boolean;
  description: string;
}

const SPECS: readonly Spec[] = [
  {
    path: 'node',
    kind: 'string',
    valueName: '<name>',
    description: 'Name of this node; must be listed in the inventory (required)',
  },
  {
    path: 'stateDir',
    kind: 'string',
    valueName: '<dir>',
    default: DEFAULTS.stateDir,
    description: 'Directory for persistent state (id allocations, keys, audit log)',
  },
  {
    path: 'bpf.pinDir',
    kind: 'string',
    valueName: '<dir>',
    default: DEFAULTS.bpfPinDir,
    description: 'bpffs directory where the datapath maps are pinned',
  },
  {
    path: 'bpf.object',
    kind: 'string',
    valueName: '<file>',
    description: 'Compiled datapath object (default: bpf/meshauth.bpf.o in the package)',
  },
  {
    path: 'datapath.attach',
    kind: 'attach',
    valueName: '<spec,...>',
    description:
      'Attach points, comma-separated or repeated (required): ' +
      'tc:<iface>:<ingress|egress>[:<semantics>] checks the packets at that tc hook, <semantics> (default: the hook) naming the local end: egress the source, ingress the destination; ' +
      'cgroup:<path>[:<ingress|egress>] checks the packets the sockets of a cgroup v2 subtree send (egress, default) or receive; ' +
      'sockops:<cgroup path> checks nothing, it shortens the first SYN timeout of unauthenticated pairs (datapath.synRto)',
  },
  {
    path: 'datapath.signalThrottle',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.signalThrottle,
    description: 'Minimum time between two auth-required signals for one pair',
  },
  {
    path: 'datapath.synRto',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.synRto,
    description: 'Initial SYN timeout for sockets of unauthenticated pairs in sockops cgroups',
  },
  {
    path: 'datapath.synReplay',
    kind: 'bool',
    valueName: '<bool>',
    default: true,
    description:
      "Send a cold pair's dropped SYN again once both entries exist, instead of waiting for the SYN retransmission",
  },
  {
    path: 'datapath.maps.auth',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.mapAuth,
    description:
      'Auth map entries (authenticated pairs on this node); when full, handshakes fail with auth-map-full and no entry is written',
  },
  {
    path: 'datapath.maps.ipcache',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.mapIpcache,
    description: 'ipcache entries (pod addresses and CIDRs of the cluster)',
  },
  {
    path: 'datapath.maps.policy',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.mapPolicy,
    description: 'Policy map entries (identity pairs with a rule)',
  },
  {
    path: 'datapath.maps.throttle',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.mapThrottle,
    description: 'Signal throttle slots (pairs signalled within one throttle window)',
  },
  {
    path: 'datapath.maps.signalRingBytes',
    kind: 'int',
    valueName: '<bytes>',
    default: DEFAULTS.mapSignalRingBytes,
    description:
      'Signal ring buffer size in bytes (a power of two); signals beyond it are counted as signal_ringbuf_full',
  },
  {
    path: 'datapath.strictWireguard',
    kind: 'bool',
    valueName: '<bool>',
    default: false,
    description: 'Drop remote-pod traffic that did not arrive through the WireGuard interface',
  },
  {
    path: 'handshake.listen',
    kind: 'string',
    valueName: '<ip>',
    default: DEFAULTS.handshakeListen,
    description: 'Address the handshake server listens on',
  },
  {
    path: 'handshake.port',
    kind: 'int',
    valueName: '<port>',
    default: DEFAULTS.handshakePort,
    description: 'TCP port of the handshake server (and of peers, unless the inventory says otherwise)',
  },
  {
    path: 'handshake.timeout',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.handshakeTimeout,
    description: 'Deadline for one complete handshake',
  },
  {
    path: 'handshake.maxConnections',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.handshakeMaxConnections,
    description: 'Concurrent handshake connections the server accepts',
  },
  {
    path: 'handshake.perPeerRate',
    kind: 'number',
    valueName: '<per-second>',
    default: DEFAULTS.handshakePerPeerRate,
    description: 'Handshakes per second accepted from one peer address',
  },
  {
    path: 'handshake.perPeerBurst',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.handshakePerPeerBurst,
    description: 'Burst of handshakes accepted from one peer address',
  },
  {
    path: 'handshake.maxEntryTtl',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.handshakeMaxEntryTtl,
    description: 'Upper bound of an auth entry lifetime',
  },
  {
    path: 'auth.maxConcurrent',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.authMaxConcurrent,
    description: 'Handshakes in flight at once (client side)',
  },
  {
    path: 'auth.queueSize',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.authQueueSize,
    description: 'Pending pairs waiting for a handshake',
  },
  {
    path: 'auth.retryBase',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.authRetryBase,
    description: 'First retry delay after a failed handshake',
  },
  {
    path: 'auth.retryMax',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.authRetryMax,
    description: 'Largest retry delay',
  },
  {
    path: 'auth.reauthAt',
    kind: 'number',
    valueName: '<fraction>',
    default: DEFAULTS.authReauthAt,
    description: 'Re-authenticate when this fraction of an entry lifetime has passed (0 = only on demand)',
  },
  {
    path: 'auth.gcInterval',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.authGcInterval,
    description: 'Interval of expired-entry garbage collection',
  },
  {
    path: 'auth.preauthenticate',
    kind: 'bool',
    valueName: '<bool>',
    default: false,
    description:
      'Authenticate every pair policy requires with workloads on other nodes at start-up and on inventory change, before their first packet',
  },
  {
    path: 'auth.mode',
    kind: 'string',
    valueName: '<mode>',
    default: DEFAULTS.authMode,
    description:
      'per-pair: one TLS handshake per identity pair; channel: one TLS channel per node pair carrying RFC 9261 identity proofs (falls back to per-pair with nodes that do not speak it)',
  },
  {
    path: 'auth.channel.port',
    kind: 'int',
    valueName: '<port>',
    default: DEFAULTS.authChannelPort,
    description: 'TCP port of the node-channel listener (auth.mode channel), on handshake.listen',
  },
  {
    path: 'auth.channel.nodeId',
    kind: 'string',
    valueName: '<template>',
    default: DEFAULTS.authChannelNodeId,
    description:
      'SPIFFE ID of node daemons; {node} is the node name, {trustDomain} the dev CA trust domain (dev-ca only)',
  },
  {
    path: 'auth.channel.maxChannels',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.authChannelMaxChannels,
    description:
      'Node channels kept open at once (1..1000000); a new one at the cap closes the least recently used channel first (idle before busy), whose next pair dials again',
  },
  {
    path: 'identity.source',
    kind: 'string',
    valueName: '<source>',
    default: DEFAULTS.identitySource,
    description: 'SVID source: dev-ca (development only), spire-delegated, workload-api or files',
  },
  {
    path: 'identity.devCa.trustDomain',
    kind: 'string',
    valueName: '<domain>',
    default: DEFAULTS.devCaTrustDomain,
    description: 'Trust domain of the development CA',
  },
  {
    path: 'identity.devCa.caCert',
    kind: 'string',
    valueName: '<file>',
    description: 'Development CA certificate (default: <stateDir>/dev-ca/ca.crt, created if missing)',
  },
  {
    path: 'identity.devCa.caKey',
    kind: 'string',
    valueName: '<file>',
    description: 'Development CA private key (default: <stateDir>/dev-ca/ca.key)',
  },
  {
    path: 'identity.devCa.svidTtl',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.devCaSvidTtl,
    description: 'Lifetime of SVIDs issued by the development CA',
  },
  {
    path: 'identity.spire.adminSocket',
    kind: 'string',
    valueName: '<file>',
    default: DEFAULTS.spireAdminSocket,
    description: 'SPIRE agent admin socket (Delegated Identity API)',
  },
  {
    path: 'identity.spire.maxMessageBytes',
    kind: 'int',
    valueName: '<bytes>',
    default: DEFAULTS.spireMaxMessageBytes,
    description: 'Largest gRPC message accepted from the SPIRE agent',
  },
  {
    path: 'identity.workloadApi.address',
    kind: 'string',
    valueName: '<uri>',
    default: DEFAULTS.workloadApiAddress,
    description: 'SPIFFE Workload API endpoint',
  },
  {
    path: 'inventory.source',
    kind: 'string',
    valueName: '<file|kubernetes>',
    default: 'file',
    description:
      'Where nodes and workloads come from: a static file, or Pods and Nodes watched on the Kubernetes API',
  },
  {
    path: 'inventory.file',
    kind: 'string',
    valueName: '<file>',
    description:
      'Static inventory of nodes and workloads, re-read when it changes (required when inventory.source is file)',
  },
  {
    path: 'policy.source',
    kind: 'string',
    valueName: '<file|kubernetes>',
    default: 'file',
    description:
      'Where the policy comes from: a file, or MutualAuthPolicy objects watched on the Kubernetes API',
  },
  {
    path: 'policy.file',
    kind: 'string',
    valueName: '<file>',
    description:
      'Mutual authentication policy, re-read when it changes; a bad new file keeps the last good policy (required when policy.source is file)',
  },
  {
    path: 'kubernetes.kubeconfig',
    kind: 'string',
    valueName: '<file>',
    description: 'kubeconfig for the Kubernetes API (default: the in-cluster service account)',
  },
  {
    path: 'kubernetes.trustDomain',
    kind: 'string',
    valueName: '<domain>',
    description: 'Trust domain of pod SPIFFE IDs (default: identity.devCa.trustDomain)',
  },
  {
    path: 'kubernetes.spiffeIdTemplate',
    kind: 'string',
    valueName: '<template>',
    default: DEFAULTS.kubernetesSpiffeIdTemplate,
    description:
      'SPIFFE ID of a pod; placeholders {trustDomain} {namespace} {serviceAccount} {podName} {nodeName}',
  },
  {
    path: 'kubernetes.nodeAddressType',
    kind: 'string',
    valueName: '<type>',
    default: DEFAULTS.kubernetesNodeAddressType,
    description: "Node status.addresses type used as the node's handshake address: InternalIP or ExternalIP",
  },
  {
    path: 'kubernetes.publishWireguardKey',
    kind: 'bool',
    valueName: '<bool>',
    default: true,
    description:
      "Annotate this node's Node object with its WireGuard public key (meshauth.io/wireguard-public-key)",
  },
  {
    path: 'kubernetes.reportPolicyStatus',
    kind: 'bool',
    valueName: '<bool>',
    default: true,
    description: 'Write the Valid condition and Events on MutualAuthPolicy objects',
  },
  {
    path: 'audit.path',
    kind: 'string',
    valueName: '<file>',
    description: 'Audit database (default: <stateDir>/audit.db)',
  },
  {
    path: 'audit.maxAge',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.auditMaxAge,
    description: 'Audit events older than this are deleted',
  },
  {
    path: 'audit.maxEvents',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.auditMaxEvents,
    description: 'Audit events kept at most',
  },
  {
    path: 'audit.witnesses',
    kind: 'list',
    valueName: '<host:port,...>',
    description:
      "TCP APIs of other nodes or meshauth-relay that witness this node's signed audit heads (needs api.tcp.identity)",
  },
  {
    path: 'audit.headInterval',
    kind: 'duration',
    valueName: '<duration>',
    default: '60s',
    description: 'How often the audit head is signed and handed to the witnesses',
  },
  {
    path: 'audit.witnessMaxSkew',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.auditWitnessMaxSkew,
    description: "Witness: refuse a head dated further than this from this node's clock at receipt",
  },
  {
    path: 'audit.otlpEndpoint',
    kind: 'string',
    valueName: '<url>',
    description:
      'Ship committed audit events as OTLP/HTTP JSON logs to this endpoint (http://collector:4318/v1/logs); the last acknowledged seq is kept in <audit.path>.otlp-cursor',
  },
  {
    path: 'audit.otlpBatchSize',
    kind: 'int',
    valueName: '<n>',
    default: DEFAULTS.auditOtlpBatchSize,
    description: 'Audit events per OTLP request, at most (1..10000)',
  },
  {
    path: 'audit.otlpTimeout',
    kind: 'duration',
    valueName: '<duration>',
    default: DEFAULTS.auditOtlpTimeout,
    description: 'Deadline of one OTLP request (a timed-out request is retried)',
  },
  {
    path: 'api.socket',
    kind: 'string',
    valueName: '<file>',
    default: DEFAULTS.apiSocket,
    description: 'Unix socket of the gRPC API',
  },
  {
    path: 'api.socketMode',
    kind: 'string',
    valueName: '<mode>',
    default: DEFAULTS.apiSocketMode,
    description: 'File mode of the API socket (octal; no access for other users: 0600 or 0660)',
  },
  {
    path: 'api.tcp.listen',
    kind: 'string',
    valueName: '<host:port>',
    description: 'Optional TCP listener of the API (mTLS; needs api.tcp.allowedIds)',
  },
  {
    path: 'api.tcp.allowedIds',
    kind: 'list',
    valueName: '<spiffe-id,...>',
    description: 'SPIFFE IDs allowed to use the TCP API',
  },
  {
    path: 'api.tcp.identity',
    kind: 'string',
    valueName: '<spiffe-id>',
    description:
      'SPIFFE ID whose SVID the TCP API presents and signs audit heads with; {node} = this node, {trustDomain} = the dev CA trust domain (default: the first workload of this node with an SVID)',
  },
  {
    path: 'metrics.listen',
    kind: 'string',
    valueName: '<host:port>',
    default: DEFAULTS.metricsListen,
    description: 'Prometheus metrics, /healthz and /readyz ("" disables)',
  },
  {
    path: 'wireguard.enabled',
    kind: 'bool',
    valueName: '<bool>',
    default: false,
    description: 'Carry pod traffic between nodes over WireGuard',
  },
  {
    path: 'wireguard.interface',
    kind: 'string',
    valueName: '<name>',
    default: DEFAULTS.wireguardInterface,
    description: 'WireGuard interface name',
  },
  {
    path: 'wireguard.listenPort',
    kind: 'int',
    valueName: '<port>',
    default: DEFAULTS.wireguardListenPort,
    description: 'WireGuard UDP port',
  },
  {
    path: 'wireguard.address',
    kind: 'string',
    valueName: '<cidr>',
    description:
      "This node's address on the WireGuard interface, /32 or /128; a bare address means that host prefix (required when enabled)",
  },
  {
    path: 'wireguard.privateKeyFile',
    kind: 'string',
    valueName: '<file>',
    description: 'Node WireGuard private key, mode 0600 (default: <stateDir>/wireguard/private.key)',
  },
  {
    path: 'wireguard.userspaceBinary',
    kind: 'string',
    valueName: '<file>',
    default: DEFAULTS.wireguardUserspaceBinary,
    description:
      'wireguard-go executable, used where the kernel has no WireGuard module (a name is looked up on PATH)',
  },
  {
    path: 'log.level',
    kind: 'string',
    valueName: '<level>',
    default: DEFAULTS.logLevel,
    description: 'fatal, error, warn, info, debug, trace or silent',
  },
];

function kebab(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/** "1ms..5m": the bounds of a duration setting (schema.ts DURATION_LIMITS). */
function durationRange(path: string): string {
  const limits = (DURATION_LIMITS as Record<string, { minMs: number; maxMs: number } | undefined>)[path];
  if (!limits) throw new Error(`options: duration ${path} has no bounds in DURATION_LIMITS`);
  return `${formatDuration(limits.minMs)}..${formatDuration(limits.maxMs)}`;
}

function describe(spec: Spec): OptionDescription {
  const words = spec.path.split('.').map(kebab).join('-');
  return {
    path: spec.path,
    flag: `--${words}`,
    attributeName: words.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase()),
    env: `MESHAUTH_${words.replace(/-/g, '_').toUpperCase()}`,
    kind: spec.kind,
    valueName: spec.valueName,
    default: spec.default === undefined ? undefined : String(spec.default),
    description:
      spec.kind === 'duration' ? `${spec.description} (${durationRange(spec.path)})` : spec.description,
  };
}

const CONFIG_OPTION: OptionDescription = {
  path: undefined,
  flag: '--config',
  attributeName: 'config',
  env: 'MESHAUTH_CONFIG',
  kind: 'string',
  valueName: '<file>',
  default: undefined,
  description: 'Configuration file (YAML); flags override environment, environment overrides the file',
};

const DESCRIPTIONS: readonly OptionDescription[] = [CONFIG_OPTION, ...SPECS.map(describe)];

/** Every option of meshauthd: --config first, then one per configuration setting. */
export function describeOptions(): OptionDescription[] {
  return DESCRIPTIONS.map((d) => ({ ...d }));
}

/** Options that map to a configuration path (everything except --config). */
export function settingOptions(): Array<OptionDescription & { path: string }> {
  return DESCRIPTIONS.filter((d): d is OptionDescription & { path: string } => d.path !== undefined);
}
