import type { HostPort } from './fields.js';

export type { HostPort };

export type Hook = 'ingress' | 'egress';
export type IdentitySourceKind = 'dev-ca' | 'spire-delegated' | 'workload-api' | 'files';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Where the datapath programs attach. */
export type AttachPoint =
  | {
      type: 'tc';
      interface: string;
      hook: Hook;
      /** "egress": the packet's source is the local workload; "ingress": its destination is. */
      semantics: Hook;
    }
  | {
      type: 'cgroup';
      /** Absolute path of a cgroup v2 directory. */
      path: string;
      hook: Hook;
      /** Always equal to the hook for cgroup programs. */
      semantics: Hook;
    }
  | {
      /** sock_ops on a cgroup v2 directory: shortens the first SYN timeout of unauthenticated pairs. */
      type: 'sockops';
      path: string;
    };

/**
 * The daemon configuration, fully defaulted. All durations are milliseconds; all paths are
 * absolute (relative ones in the file resolve against the file's directory, those from flags or
 * environment against the working directory).
 */
export interface DaemonConfig {
  /** The configuration file this was loaded from (absolute), if any. */
  file: string | undefined;
  node: string;
  stateDir: string;
  bpf: { pinDir: string; object: string };
  datapath: {
    attach: AttachPoint[];
    signalThrottleMs: number;
    strictWireguard: boolean;
    /** Initial SYN retransmission timeout for sockets of unauthenticated pairs (sockops attach points). */
    synRtoMs: number;
    /**
     * Send a cold pair's dropped SYN again (raw socket, node network namespace) once both entries
     * exist, instead of waiting for the client's retransmission (tc egress-semantics drops only).
     */
    synReplay: boolean;
    /** Map sizes (entries; the signal ring in bytes), checked by the schema. */
    maps: { auth: number; ipcache: number; policy: number; throttle: number; signalRingBytes: number };
  };
  handshake: {
    listen: string;
    port: number;
    timeoutMs: number;
    maxConnections: number;
    /** Handshakes per second accepted from one peer address (token bucket rate). */
    perPeerRate: number;
    perPeerBurst: number;
    maxEntryTtlMs: number;
  };
  auth: {
    maxConcurrent: number;
    queueSize: number;
    retryBaseMs: number;
    retryMaxMs: number;
    /** Re-authenticate a pair when this fraction of its entry's lifetime has passed (0..1). */
    reauthAt: number;
    gcIntervalMs: number;
    /** Authenticate policy-implied pairs before their first packet. */
    preauthenticate: boolean;
    /** per-pair: one TLS handshake per identity pair; channel: node channels with RFC 9261 proofs. */
    mode: 'per-pair' | 'channel';
    channel: {
      /** Port of the node-channel listener (on handshake.listen); the same on every node. */
      port: number;
      /** SPIFFE ID template of node daemons ({node}; {trustDomain} only with the dev CA). */
      nodeId: string;
      /** Node channels kept open at once; at the cap the least recently used is closed first. */
      maxChannels: number;
    };
  };
  identity: {
    source: IdentitySourceKind;
    /** Embedded development CA (dev only). caCert/caKey default to <stateDir>/dev-ca/ca.{crt,key}. */
    devCa: { trustDomain: string; caCert: string; caKey: string; svidTtlMs: number };
    spire: { adminSocket: string; maxMessageBytes: number };
    workloadApi: { address: string };
    files: { bundle: string; svids: Array<{ spiffeId: string; cert: string; key: string }> } | undefined;
  };
  /** source "file": `file` is set (and watched); "kubernetes": Pods and Nodes from the API. */
  inventory: { source: 'file' | 'kubernetes'; file: string | undefined };
  /** source "file": `file` is set; "kubernetes": MutualAuthPolicy objects from the API. */
  policy: { source: 'file' | 'kubernetes'; file: string | undefined };
  kubernetes: {
    /** undefined = in-cluster service account. */
    kubeconfig: string | undefined;
    /** Trust domain of pod SPIFFE IDs; defaults to identity.devCa.trustDomain. */
    trustDomain: string;
    /** {trustDomain} {namespace} {serviceAccount} {podName} {nodeName} */
    spiffeIdTemplate: string;
    /** Node status.addresses type used as the handshake address. */
    nodeAddressType: string;
    /** Annotate this node's Node object with its WireGuard public key and port. */
    publishWireguardKey: boolean;
    /** Write the Valid condition and Events on MutualAuthPolicy objects. */
    reportPolicyStatus: boolean;
  };
  audit: {
    path: string;
    maxAgeMs: number;
    maxEvents: number;
    /**
     * TCP APIs (other nodes, meshauth-relay) that witness this node's signed audit heads; empty =
     * none. Heads are signed with the SVID of api.tcp.identity every headIntervalMs.
     */
    witnesses: HostPort[];
    headIntervalMs: number;
    /** Most a head submitted to this node's witness may be dated from its clock, ms. */
    witnessMaxSkewMs: number;
    /** OTLP/HTTP logs endpoint committed events are shipped to (http(s)://host:4318/v1/logs); undefined = off. */
    otlpEndpoint: string | undefined;
    /** Events per OTLP request, at most. */
    otlpBatchSize: number;
    /** Deadline of one OTLP request, ms. */
    otlpTimeoutMs: number;
  };
  api: {
    socket: string;
    /** Numeric file mode of the socket (0o600 by default). */
    socketMode: number;
    /**
     * identity: the SPIFFE ID whose SVID the listener presents (one the identity source provides);
     * undefined = the first workload of this node that has an SVID.
     */
    tcp: { listen: HostPort; allowedIds: string[]; identity: string | undefined } | undefined;
  };
  /** null when disabled (listen: ""). */
  metrics: { listen: HostPort | null };
  wireguard: {
    enabled: boolean;
    interface: string;
    listenPort: number;
    /** Address of the node's WireGuard interface, CIDR form. */
    address: string | undefined;
    /** Defaults to <stateDir>/wireguard/private.key. */
    privateKeyFile: string;
    /** wireguard-go executable (path, or a name looked up on PATH); default "wireguard-go". */
    userspaceBinary: string;
  };
  log: { level: LogLevel };
}
