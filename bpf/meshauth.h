/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wire structures shared between the meshauth BPF programs and user space.
 * Every struct here is mirrored byte for byte in src/datapath/wire.ts; padding is explicit so that
 * both sides agree on the layout without relying on compiler rules.
 */
#ifndef MESHAUTH_H
#define MESHAUTH_H

#include <linux/types.h>

/* Auth types (src/datapath/types.ts AuthType). */
#define MA_AUTH_SPIFFE_MTLS 1

/* Default signal throttle window when the config map holds 0: 250 ms. */
#define MA_DEFAULT_THROTTLE_NS (250ULL * 1000 * 1000)

/*
 * Default initial SYN retransmission timeout of unauthenticated pairs when the config map holds 0
 * (user space writes datapath.synRto, same default). 8 ms: the first retransmission should follow
 * the auth entry of a typical cold pair, so that one retransmission suffices (Linux cuts a new
 * connection's initial congestion window to 1 after more than one SYN retransmission), and no
 * later, since it is the cold pair's first-connection time. Signal -> entry takes under 5 ms (p99)
 * over a node channel and about 5 ms (p50) with a per-pair handshake; 8 ms is two jiffies at
 * CONFIG_HZ=250 (one at 100 rounds up to 10 ms). The reasoning and numbers are in BENCHMARKS.md.
 */
#define MA_DEFAULT_SYN_RTO_MS 8
/* Kernel tick rate assumed when the config map holds 0 (user space writes CONFIG_HZ). */
#define MA_DEFAULT_HZ 250

/* ma_config.flags */
#define MA_FLAG_STRICT_WIREGUARD (1U << 0)

/* Policy modes (ma_policy_value.mode). A disabled rule has no policy entry at all. */
#define MA_MODE_ENFORCE 0
#define MA_MODE_PERMISSIVE 1

/* ma_signal.flags */
#define MA_SIG_PERMISSIVE (1U << 0) /* the pair's policy is permissive: the packet passed */
#define MA_SIG_UNRESOLVED (1U << 1) /* the remote address is in a pod CIDR but has no identity yet */

/*
 * Reserved identity of ipcache entries that cover a node's pod CIDR: an address inside it with no
 * more specific (workload) entry belongs to a pod the daemon does not know yet. The policy entry
 * (local, MA_ID_UNRESOLVED) of a local identity says what happens to its traffic with such
 * addresses; user space writes one for every local identity that has an enforced or permissive
 * rule. Never allocated to a SPIFFE ID.
 */
#define MA_ID_UNRESOLVED 0xffffffffU

/* Signal directions. */
#define MA_DIR_EGRESS 0
#define MA_DIR_INGRESS 1

/* ipcache LPM key; mirrored in src/datapath/wire.ts (20 bytes).
 * IPv4 addresses are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d) with prefixlen + 96. */
struct ma_ipcache_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Exact-match host key of ma_hosts; mirrored in src/datapath/wire.ts (16 bytes): the address of a
 * /128 (or IPv4 /32, stored IPv4-mapped) ipcache entry. */
struct ma_host_key {
	__u8 addr[16];
};

/*
 * Flow key of the per-CPU verdict cache; mirrored in src/datapath/wire.ts (40 bytes): the packet's
 * source and destination addresses (IPv4 as ::ffff:a.b.c.d) and, for ingress semantics, the
 * interface it arrived on (strict WireGuard mode depends on it; 0 for egress semantics).
 */
struct ma_flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u32 ifindex;
	__u32 pad;
};

/*
 * One slot of ma_flow_cache (one per program per CPU); mirrored in src/datapath/wire.ts (64
 * bytes). It remembers the last pass_authenticated verdict of its program on its CPU: the flow, the
 * auth entry's expiry, and the map generation (ma_generation) read before the lookups that gave the
 * verdict. seq is odd while a program writes the slot (a seqcount, see cache_store()).
 */
struct ma_flow_cache_slot {
	__u64 seq;
	__u64 generation;
	__u64 expiry_boot_ns;
	struct ma_flow_key key;
};

/*
 * ma_flow_cache: per program, 2^MA_FLOW_CACHE_BITS slots (direct-mapped by a hash of the flow key,
 * mirrored in src/datapath/wire.ts flowCacheIndex); slot index = program * 2^bits + hash.
 */
#define MA_PROG_TC_EGRESS 0
#define MA_PROG_TC_INGRESS 1
#define MA_PROG_CGROUP_EGRESS 2
#define MA_PROG_CGROUP_INGRESS 3
#define MA_FLOW_CACHE_BITS 8
#define MA_FLOW_CACHE_SLOTS (4 << MA_FLOW_CACHE_BITS)

/* ipcache value (ma_ipcache and ma_hosts); mirrored in src/datapath/wire.ts (8 bytes). node_id 0 = this node. */
struct ma_ipcache_value {
	__u32 identity;
	__u32 node_id;
};

/* policy key; mirrored in src/datapath/wire.ts (8 bytes). remote_id 0 = any remote. */
struct ma_policy_key {
	__u32 local_id;
	__u32 remote_id;
};

/* policy value; mirrored in src/datapath/wire.ts (4 bytes). */
struct ma_policy_value {
	__u8 auth_type;
	__u8 mode; /* MA_MODE_* */
	__u8 pad[2];
};

/* auth map and throttle key; mirrored in src/datapath/wire.ts (16 bytes). */
struct ma_auth_key {
	__u32 local_id;
	__u32 remote_id;
	__u32 remote_node;
	__u8 auth_type;
	__u8 pad[3];
};

/* auth map value; mirrored in src/datapath/wire.ts (8 bytes). CLOCK_BOOTTIME nanoseconds. */
struct ma_auth_value {
	__u64 expiry_boot_ns;
};

/*
 * Largest dropped SYN (IP header + TCP header with options, no payload) a signal carries: an IPv4
 * header with options (60) plus a full TCP header (60) fits, as does IPv6 (40, no extension
 * headers) plus 60.
 */
#define MA_SYN_MAX 128

/*
 * ring buffer record; mirrored in src/datapath/wire.ts (160 bytes). syn_len > 0 when the packet
 * that raised the signal was a TCP SYN without payload (SYN set, ACK clear) dropped by a tc program
 * of egress semantics: syn holds its first syn_len bytes from the IP header on (the rest is zero),
 * so that user space can send it again once the pair is authenticated.
 */
struct ma_signal {
	__u32 local_id;
	__u32 remote_id;
	__u32 remote_node;
	__u8 auth_type;
	__u8 direction; /* MA_DIR_* */
	__u8 flags;	/* MA_SIG_* */
	__u8 pad;
	__u64 boot_ns;
	__u16 syn_len;
	__u8 pad2[6];
	__u8 syn[MA_SYN_MAX];
};

/* config (ARRAY of one element); mirrored in src/datapath/wire.ts (24 bytes). */
struct ma_config {
	__u64 throttle_ns;
	__u32 wg_ifindex;
	__u32 flags; /* MA_FLAG_* */
	__u32 syn_rto_ms; /* initial SYN RTO of unauthenticated pairs; 0 = MA_DEFAULT_SYN_RTO_MS */
	__u32 hz;	  /* kernel CONFIG_HZ (jiffies per second); 0 = MA_DEFAULT_HZ */
};

/* Verdict counter indexes; same order as VerdictName in src/datapath/types.ts (mirrored in
 * src/datapath/wire.ts VERDICT_NAMES). */
enum ma_verdict {
	MA_PASS_NO_POLICY = 0,
	MA_PASS_AUTHENTICATED = 1,
	MA_PASS_UNKNOWN_IDENTITY = 2,
	MA_PASS_NOT_IP = 3,
	MA_DROP_AUTH_MISSING = 4,
	MA_DROP_AUTH_EXPIRED = 5,
	MA_DROP_NOT_VIA_WIREGUARD = 6,
	MA_SIGNAL_SENT = 7,
	MA_SIGNAL_THROTTLED = 8,
	MA_SIGNAL_RINGBUF_FULL = 9,
	MA_SYN_RTO_SHORTENED = 10, /* sock_ops: connections, not packets */
	MA_DROP_UNPARSED_ENCAP = 11, /* MPLS, PPPoE or more than two VLAN tags: may hide IP */
	MA_PASS_PERMISSIVE = 12,	   /* unauthenticated pair passed because its policy is permissive */
	MA_DROP_UNRESOLVED_POD_IP = 13, /* remote address in a pod CIDR with no identity yet */
	MA_VERDICT_MAX = 14,
};

/* Map sizes; mirrored in src/datapath/wire.ts. */
#define MA_IPCACHE_MAX 65536
#define MA_HOSTS_MAX 65536
#define MA_POLICY_MAX 16384
#define MA_AUTH_MAX 65536
#define MA_THROTTLE_MAX 65536
#define MA_SIGNALS_BYTES (1024 * 1024)

#endif /* MESHAUTH_H */
