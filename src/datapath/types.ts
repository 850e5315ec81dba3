/**
 * Domain types of the datapath, shared by src/datapath (which converts them to and from the wire
 * structs in bpf/meshauth.h) and src/auth (which only sees these).
 */

/** Auth types carried in policy values, auth keys and signals. Must match bpf/meshauth.h. */
export const AuthType = {
  /** SPIFFE X509-SVID mutual TLS between the two node daemons. */
  SpiffeMtls: 1,
} as const;
export type AuthTypeValue = (typeof AuthType)[keyof typeof AuthType];

/** Numeric identity 0 means "unknown / world". Never allocated to a SPIFFE ID. */
export const IDENTITY_UNKNOWN = 0;
/** Policy remote id 0 is the wildcard "any remote identity". */
export const POLICY_ANY_REMOTE = 0;
/**
 * Reserved identity (MA_ID_UNRESOLVED) of ipcache entries covering a node's pod CIDR: an address
 * inside it without a workload entry belongs to a pod not known yet. As a policy remote id it
 * says what happens to a local identity's traffic with such addresses. Never allocated.
 */
export const IDENTITY_UNRESOLVED = 0xffffffff;
/** Node id 0 is the local node. */
export const LOCAL_NODE_ID = 0;

/** Key of the BPF auth map. remoteNode is a node-local handle of the peer node (never 0). */
export interface AuthKey {
  localId: number;
  remoteId: number;
  remoteNode: number;
  authType: number;
}

/** Value of the BPF auth map, expressed in wall-clock time (the binding converts to boot time). */
export interface AuthValue {
  /** Unix epoch milliseconds after which the kernel treats the entry as expired. */
  expiresAtMs: number;
}

/** Direction of the packet that caused a signal, relative to the local workload. */
export type Direction = 'egress' | 'ingress';

/**
 * How the datapath treats an unauthenticated pair (MA_MODE_* of bpf/meshauth.h): "enforce" drops
 * its packets, "permissive" passes them counted as pass_permissive and still signals. A disabled
 * rule has no policy entry.
 */
export type PolicyMode = 'enforce' | 'permissive';

/** One auth-required signal read from the ring buffer. */
export interface AuthSignal {
  localId: number;
  remoteId: number;
  remoteNode: number;
  authType: number;
  direction: Direction;
  /** The pair's policy is permissive: the packet passed unauthenticated. */
  permissive?: boolean;
  /** remoteId is IDENTITY_UNRESOLVED: an address in a pod CIDR whose pod is not known yet. */
  unresolved?: boolean;
  /** Kernel CLOCK_BOOTTIME of the drop, nanoseconds. */
  bootNs: bigint;
  /**
   * The dropped packet, from the IP header on, when it was a TCP SYN without payload dropped by a
   * tc program of egress semantics (at most 128 bytes); what datapath.synReplay sends again.
   */
  syn?: Buffer;
}

/** ipcache: which identity and node an address prefix belongs to. */
export interface IpcacheEntry {
  /** "10.0.1.5/32", "fd00::/64", ... */
  cidr: string;
  identity: number;
  /** 0 = this node. */
  nodeId: number;
}

/**
 * policy: pair (local identity, remote identity, POLICY_ANY_REMOTE or IDENTITY_UNRESOLVED) ->
 * auth type and mode.
 */
export interface PolicyKey {
  localId: number;
  remoteId: number;
}

/** Per-verdict packet counters, summed over CPUs. Names must match the reasons in bpf/meshauth.h. */
export type VerdictName =
  | 'pass_no_policy'
  | 'pass_authenticated'
  | 'pass_unknown_identity'
  | 'pass_not_ip'
  | 'drop_auth_missing'
  | 'drop_auth_expired'
  | 'drop_not_via_wireguard'
  | 'signal_sent'
  | 'signal_throttled'
  | 'signal_ringbuf_full'
  /** sock_ops: connections of unauthenticated pairs whose initial SYN RTO was shortened (not packets). */
  | 'syn_rto_shortened'
  /** Frames that may carry IP in an encapsulation the datapath does not parse (MPLS, PPPoE, 3+ VLAN tags): dropped. */
  | 'drop_unparsed_encap'
  /** Packets of unauthenticated pairs passed because the pair's policy is permissive. */
  | 'pass_permissive'
  /** Packets dropped because the remote address is in a pod CIDR but not (yet) in the ipcache. */
  | 'drop_unresolved_pod_ip';

export type VerdictCounters = Record<VerdictName, bigint>;

/** Runtime settings of the datapath, written to its config map. */
export interface DatapathSettings {
  /** Minimum time between two signals for the same auth key. Default 250 ms. */
  signalThrottleMs: number;
  /**
   * Strict mode: drop packets whose source is a remote node's pod address but that did not arrive
   * on the WireGuard interface. 0 = off.
   */
  wireguardIfindex: number;
  strictWireguard: boolean;
  /**
   * Initial SYN retransmission timeout that the sock_ops program gives active opens of pairs that
   * require authentication and have no live entry (instead of the kernel's 1 s). 1..1000 ms;
   * default 50 ms.
   */
  synRtoMs?: number;
  /**
   * Kernel tick rate (CONFIG_HZ) used to convert synRtoMs to jiffies. Default: read from
   * /boot/config-$(uname -r) or /proc/config.gz, else 250.
   */
  kernelHz?: number;
}

/** The auth map as src/auth sees it. Implemented over the pinned BPF map and by in-memory fakes. */
export interface AuthMap {
  lookup(key: AuthKey): AuthValue | undefined;
  update(key: AuthKey, value: AuthValue): void;
  /** Returns false when the key was not present. */
  delete(key: AuthKey): boolean;
  entries(): Iterable<[AuthKey, AuthValue]>;
  /**
   * Now, in the clock the datapath compares expiries with, in milliseconds. For the kernel map this
   * is CLOCK_BOOTTIME (bpf_ktime_get_boot_ns): monotonic, counts suspend, never steps with the
   * wall clock.
   */
  clockNowMs(): number;
  /** The entry's expiry exactly as the datapath holds it, in clockNowMs() units; undefined when absent. */
  expiryClockMs(key: AuthKey): number | undefined;
  /**
   * Every entry with its expiry as expiryClockMs() gives it, read in as few calls as the map
   * allows (the kernel map: BPF_MAP_LOOKUP_BATCH, 256 entries a call). What a full comparison
   * with the mirror walks: per-key lookups cost three system calls an entry.
   */
  expiriesClockMs(): Iterable<[AuthKey, number]>;
}

/** A source of auth-required signals (the ring buffer reader, or a fake). */
export interface SignalSource {
  /** Calls `onSignal` for every record until close(); resolves when the reader ends. */
  run(onSignal: (signal: AuthSignal) => void): Promise<void>;
  close(): void;
}
