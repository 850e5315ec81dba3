// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * meshauth datapath: drops packets of identity pairs that policy marks as requiring mutual
 * authentication until user space has written a live entry for the pair in the auth map, and
 * signals user space (throttled per pair) through a ring buffer.
 *
 * Programs:
 *   meshauth_tc_egress / meshauth_tc_ingress          tc (clsact), "egress" / "ingress" semantics
 *   ma_cgrp_egress / ma_cgrp_ingress  cgroup_skb
 *   ma_sockops                                        cgroup sock_ops: shortens the initial SYN
 *                                                     RTO of connections that will be dropped
 * "egress" semantics: the source address is the local workload, the destination is remote.
 * "ingress" semantics: the destination is local, the source is remote.
 *
 * Only the fixed IPv4/IPv6 headers are read (the addresses), so IPv6 extension headers never need to
 * be walked. IP behind one or two in-band 802.1Q/802.1ad VLAN tags is checked like untagged IP;
 * deeper tag stacks, MPLS and PPPoE session frames, which may carry IP that is not parsed, are
 * dropped (drop_unparsed_encap); other non-IP frames (ARP, LLDP, ...) pass (pass_not_ip). Headers are read with bpf_skb_load_bytes_relative(BPF_HDR_START_NET), which works the
 * same on Ethernet devices, L3 devices (WireGuard, tun) and cgroup skbs.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "meshauth.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MA_IPCACHE_MAX);
	__type(key, struct ma_ipcache_key);
	__type(value, struct ma_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_ipcache SEC(".maps");

/*
 * The host (/128 and IPv4 /32) entries of ma_ipcache again, in an exact-match hash: a packet's
 * address is looked up here first and in the LPM trie only when absent. User space writes every
 * host entry to both maps (trie first, removal from here first), so a hit here is the entry the
 * trie's longest-prefix match would return and the verdict is the same; the hash saves the walk
 * of the trie for the common case of a pod address. CIDR entries (pod CIDRs, external ranges)
 * live only in the trie.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MA_HOSTS_MAX);
	__type(key, struct ma_host_key);
	__type(value, struct ma_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_hosts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MA_POLICY_MAX);
	__type(key, struct ma_policy_key);
	__type(value, struct ma_policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MA_AUTH_MAX);
	__type(key, struct ma_auth_key);
	__type(value, struct ma_auth_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_auth SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MA_THROTTLE_MAX);
	__type(key, struct ma_auth_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_throttle SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MA_SIGNALS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_signals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MA_VERDICT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ma_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_config SEC(".maps");

/*
 * Map generation: a 64-bit value that user space replaces with a fresh random one after every
 * write or delete of ma_ipcache, ma_hosts, ma_policy, ma_auth or ma_config returns from the kernel
 * (src/datapath/datapath.ts). 0 turns the verdict cache off (never bumped, or a CPU architecture on
 * which the ordering argument below does not hold).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_generation SEC(".maps");

/*
 * Per-CPU verdict cache: per program, 256 slots, each keeping the last flow hashed to it that
 * passed as pass_authenticated on this CPU, with the auth entry's expiry and the generation read
 * before the lookups that gave the verdict.
 * A packet of the same flow while the generation is unchanged skips the ipcache, policy and auth
 * lookups, but still reads the clock and compares the expiry: a cached entry is never honoured past
 * its expiry, and an expired one goes the full way (drop_auth_expired, signal).
 *
 * Why a verdict from the cache is the verdict the maps give:
 *  - every input of the verdict is in the key (addresses, ingress interface) or in a map whose
 *    every change is followed by a new generation (the expiry is compared per packet);
 *  - the generation is read before the lookups, so a map change that overlaps the lookups leaves a
 *    slot stamped with the old generation, which the change's new generation invalidates;
 *  - a program that reads the new generation also sees the change made before it: user space
 *    writes the generation only after the change's syscall returned, and on x86-64 (TSO: stores
 *    become visible in order, loads are not reordered with loads) the program's later map lookups
 *    see the change. User space writes a non-zero generation only on x86-64 (see
 *    src/datapath/datapath.ts); elsewhere the cache stays off;
 *  - generations are random, not counted, so several writing processes need no read-modify-write:
 *    any write ends with a value different from every earlier one (but with probability 2^-64).
 * A slot is written only by programs on its CPU; a program may be interrupted or (cgroup programs
 * on a preemptible kernel) preempted by another on the same CPU, which the slot's seqcount covers.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MA_FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct ma_flow_cache_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ma_flow_cache SEC(".maps");

/*
 * Benchmark-only builds (bpf/Makefile: bench_stage_*.bpf.o, never loaded by meshauthd) compile
 * with MA_BENCH_STAGE=N and return from decide() right after stage N, so that the per-stage cost
 * of a packet is measured by BPF_PROG_TEST_RUN in one run (bench/datapath.ts):
 *   1 after parsing the addresses, 2 after the ipcache lookups, 3 after the policy lookup,
 *   4 after the auth-map lookup (everything except the verdict counter),
 *   5 on a verdict-cache hit, after the cache check and before the clock.
 * Stages 2-4 never take a cache hit and return before the cache is written, so they measure the
 * uncached path. A build with
 * MA_BENCH_CACHE_MISS (bench_cache_miss.bpf.o) reads and writes the cache like the real program
 * but never takes a hit: the cost of every packet when two flows alternate on one CPU.
 * The value returned depends on the stage's results so that the compiler keeps the work.
 */
#ifdef MA_BENCH_STAGE
#define MA_BENCH_STOP(stage, live)                                                                 \
	do {                                                                                       \
		if (MA_BENCH_STAGE == (stage))                                                     \
			return (live) ? 1 : 0;                                                     \
	} while (0)
#else
#define MA_BENCH_STOP(stage, live)                                                                 \
	do {                                                                                       \
	} while (0)
#endif
#if defined(MA_BENCH_CACHE_MISS) || (defined(MA_BENCH_STAGE) && MA_BENCH_STAGE >= 2 && MA_BENCH_STAGE <= 4)
/* (stages 2-4 measure the uncached path even when another build filled the shared slot) */
#define MA_CACHE_HIT_ALLOWED 0
#else
#define MA_CACHE_HIT_ALLOWED 1
#endif

enum ma_semantics {
	MA_SEM_EGRESS = 0,
	MA_SEM_INGRESS = 1,
};

static __always_inline void count(__u32 verdict)
{
	__u64 *c = bpf_map_lookup_elem(&ma_counters, &verdict);

	if (c)
		*c += 1;
}

/* ipcache entry of an address (16 bytes, IPv4-mapped): the exact host entry, else the trie's
 * longest-prefix match. */
static __always_inline struct ma_ipcache_value *lookup_ipcache(const __u8 *addr)
{
	struct ma_ipcache_value *v = bpf_map_lookup_elem(&ma_hosts, addr);
	struct ma_ipcache_key k;

	if (v)
		return v;
	k.prefixlen = 128;
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&ma_ipcache, &k);
}

#define MA_BARRIER() asm volatile("" ::: "memory")
#define MA_READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define MA_WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

/* Slot of a flow within its program's slots: a multiplicative hash of the key's 32-bit words
 * (little-endian); src/datapath/wire.ts flowCacheIndex computes the same. */
static __always_inline __u32 flow_hash(const struct ma_flow_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 s = w[0] ^ w[1] ^ w[2] ^ w[3], d = w[4] ^ w[5] ^ w[6] ^ w[7];
	__u32 h = (s * 0x9e3779b1U) ^ d ^ (w[8] * 0x85ebca77U);

	return (h * 0x9e3779b1U) >> (32 - MA_FLOW_CACHE_BITS);
}

static __always_inline int flow_eq(const struct ma_flow_key *a, const struct ma_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
}

/*
 * Whether the slot holds `k` under generation `gen` (non-zero); sets *expiry. The slot's seq is
 * read before and after: an odd seq (a write in progress on this CPU) or a changed one (a write
 * ran in between) is a miss, so a slot torn by an interrupting or preempting writer never hits.
 */
static __always_inline int cache_hit(struct ma_flow_cache_slot *s, const struct ma_flow_key *k, __u64 gen,
				     __u64 *expiry)
{
	__u64 seq = MA_READ_ONCE(s->seq);

	if ((seq & 1) || gen == 0)
		return 0;
	MA_BARRIER();
	if (s->generation != gen || !flow_eq(&s->key, k))
		return 0;
	*expiry = s->expiry_boot_ns;
	MA_BARRIER();
	return MA_READ_ONCE(s->seq) == seq && MA_CACHE_HIT_ALLOWED;
}

/*
 * Writes the slot. A writer claims it by moving seq from even to odd with a compare-and-swap and
 * gives up when another writer holds it (or won the race): a preempted writer never resumes into
 * a slot someone else has half written.
 */
static __always_inline void cache_store(struct ma_flow_cache_slot *s, const struct ma_flow_key *k, __u64 gen,
					__u64 expiry)
{
	__u64 seq = MA_READ_ONCE(s->seq);

	if ((seq & 1) || __sync_val_compare_and_swap(&s->seq, seq, seq + 1) != seq)
		return;
	MA_BARRIER();
	s->generation = gen;
	s->expiry_boot_ns = expiry;
	s->key = *k;
	MA_BARRIER();
	MA_WRITE_ONCE(s->seq, seq + 2);
}

/* Policy of the pair: the exact pair first, then the wildcard "any remote" (remote_id 0). */
static __always_inline struct ma_policy_value *lookup_policy(__u32 local_id, __u32 remote_id)
{
	struct ma_policy_key pk = { .local_id = local_id, .remote_id = remote_id };
	struct ma_policy_value *pol = bpf_map_lookup_elem(&ma_policy, &pk);

	if (!pol) {
		pk.remote_id = 0;
		pol = bpf_map_lookup_elem(&ma_policy, &pk);
	}
	return pol;
}

/* Ethertypes of encapsulations that may carry IP but are not parsed: dropped (fail closed). */
#define MA_ETH_P_MPLS_UC 0x8847
#define MA_ETH_P_MPLS_MC 0x8848
#define MA_ETH_P_PPP_SES 0x8864
/* 802.1Q and 802.1ad tags parsed in front of the IP header (one tag, or QinQ). */
#define MA_MAX_VLAN_TAGS 2

/* Reads source and destination addresses as IPv4-mapped or native IPv6 addresses, behind up to
 * MA_MAX_VLAN_TAGS in-band 802.1Q/802.1ad tags (a tag the NIC stripped is not in the packet and
 * skb->protocol is already the inner type).
 * Returns 0 on success, -1 when the packet is not IP (or too short to hold the header), -2 when it
 * is an encapsulation that may carry IP but is not parsed: more VLAN tags, MPLS, PPPoE session. */
static __always_inline int load_addrs(struct __sk_buff *skb, struct ma_flow_key *fk)
{
	__u16 proto = skb->protocol;
	__u32 off = 0;

#pragma unroll
	for (int i = 0; i < MA_MAX_VLAN_TAGS; i++) {
		/* TCI (2 bytes), then the ethertype of what follows the tag */
		__be16 tag[2];

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (bpf_skb_load_bytes_relative(skb, off, tag, 4, BPF_HDR_START_NET) < 0)
			return -1;
		proto = tag[1];
		off += 4;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD) ||
	    proto == bpf_htons(MA_ETH_P_MPLS_UC) || proto == bpf_htons(MA_ETH_P_MPLS_MC) ||
	    proto == bpf_htons(MA_ETH_P_PPP_SES))
		return -2;

	/* One load per header: the fixed header holds the version and both addresses. */
	if (proto == bpf_htons(ETH_P_IP)) {
		/* version at 0, saddr at 12, daddr at 16 */
		__u8 h[20];

		if (bpf_skb_load_bytes_relative(skb, off, h, sizeof(h), BPF_HDR_START_NET) < 0 || (h[0] >> 4) != 4)
			return -1;
		/* fk is zeroed by the caller */
		fk->src[10] = 0xff;
		fk->src[11] = 0xff;
		fk->dst[10] = 0xff;
		fk->dst[11] = 0xff;
		__builtin_memcpy(&fk->src[12], &h[12], 4);
		__builtin_memcpy(&fk->dst[12], &h[16], 4);
		return 0;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		/* version at 0, saddr at 8, daddr at 24 */
		__u8 h[40];

		if (bpf_skb_load_bytes_relative(skb, off, h, sizeof(h), BPF_HDR_START_NET) < 0 || (h[0] >> 4) != 6)
			return -1;
		__builtin_memcpy(fk->src, &h[8], 16);
		__builtin_memcpy(fk->dst, &h[24], 16);
		return 0;
	}
	return -1;
}

/*
 * Copies a TCP SYN without payload (SYN set; ACK, RST and FIN clear; IP total length = IP header +
 * TCP header) into out, from the IP header on, and returns its length; returns 0 for anything else
 * (other protocols, fragments, IPv6 extension headers, VLAN-tagged frames, payload, more than
 * MA_SYN_MAX bytes). Only these bytes are ever sent again by user space (datapath.synReplay).
 */
static __always_inline __u32 capture_syn(struct __sk_buff *skb, __u8 *out)
{
	__u32 ip_len, total, doff;
	__u8 tcp[14];

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 ip[20];

		if (bpf_skb_load_bytes_relative(skb, 0, ip, sizeof(ip), BPF_HDR_START_NET) < 0 ||
		    (ip[0] >> 4) != 4 || ip[9] != 6 /* IPPROTO_TCP */ || (ip[6] & 0x3f) != 0 || ip[7] != 0)
			return 0;
		ip_len = (ip[0] & 0xf) * 4;
		total = ((__u32)ip[2] << 8) | ip[3];
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 ip[8];

		if (bpf_skb_load_bytes_relative(skb, 0, ip, sizeof(ip), BPF_HDR_START_NET) < 0 ||
		    (ip[0] >> 4) != 6 || ip[6] != 6 /* next header TCP */)
			return 0;
		ip_len = 40;
		total = 40 + (((__u32)ip[4] << 8) | ip[5]);
	} else {
		return 0;
	}
	if (ip_len < 20 || bpf_skb_load_bytes_relative(skb, ip_len, tcp, sizeof(tcp), BPF_HDR_START_NET) < 0)
		return 0;
	/* flags byte: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	if ((tcp[13] & 0x17) != 0x02)
		return 0;
	doff = (tcp[12] >> 4) * 4;
	if (doff < 20 || total != ip_len + doff)
		return 0;
	if (total < 40 || total > MA_SYN_MAX)
		return 0;
	if (bpf_skb_load_bytes_relative(skb, 0, out, total, BPF_HDR_START_NET) < 0)
		return 0;
	return total;
}

/*
 * Returns 1 to pass, 0 to drop. A pair whose policy is permissive passes unauthenticated, counted
 * as pass_permissive and signalled like a drop, so the handshake runs and operators see what
 * enforcement would drop.
 */
static __always_inline int decide(struct __sk_buff *skb, enum ma_semantics sem, int is_tc)
{
	struct ma_flow_key fk __attribute__((aligned(8))) = {};
	struct ma_ipcache_value *local, *remote;
	struct ma_policy_value *pol;
	struct ma_flow_cache_slot *slot;
	struct ma_auth_key ak = {};
	struct ma_auth_value *av;
	struct ma_config *cfg;
	__u32 zero = 0, verdict, slot_idx;
	__u64 now, throttle_ns, *last, *genp, gen, expiry = 0;
	int unresolved, pass;

	switch (load_addrs(skb, &fk)) {
	case 0:
		break;
	case -2:
		count(MA_DROP_UNPARSED_ENCAP);
		return 0;
	default:
		count(MA_PASS_NOT_IP);
		return 1;
	}
	MA_BENCH_STOP(1, fk.src[15] != fk.dst[15]);

	/* Verdict cache: the generation first, before any lookup whose result the slot may keep. */
	if (sem == MA_SEM_INGRESS)
		fk.ifindex = skb->ingress_ifindex;
	genp = bpf_map_lookup_elem(&ma_generation, &zero);
	gen = genp ? MA_READ_ONCE(*genp) : 0;
	slot_idx = is_tc ? (sem == MA_SEM_EGRESS ? MA_PROG_TC_EGRESS : MA_PROG_TC_INGRESS)
			 : (sem == MA_SEM_EGRESS ? MA_PROG_CGROUP_EGRESS : MA_PROG_CGROUP_INGRESS);
	slot_idx = (slot_idx << MA_FLOW_CACHE_BITS) | flow_hash(&fk);
	slot = bpf_map_lookup_elem(&ma_flow_cache, &slot_idx);
	if (slot && cache_hit(slot, &fk, gen, &expiry)) {
		MA_BENCH_STOP(5, expiry != 0);
		if (expiry > bpf_ktime_get_boot_ns()) {
			count(MA_PASS_AUTHENTICATED);
			return 1;
		}
		/* Expired: the full path below drops and signals. */
	}

	cfg = bpf_map_lookup_elem(&ma_config, &zero);

	if (sem == MA_SEM_EGRESS) {
		local = lookup_ipcache(fk.src);
		remote = lookup_ipcache(fk.dst);
	} else {
		local = lookup_ipcache(fk.dst);
		remote = lookup_ipcache(fk.src);
	}
	MA_BENCH_STOP(2, local && remote);

	/* Strict mode: remote-pod traffic must arrive through the WireGuard interface. */
	if (is_tc && sem == MA_SEM_INGRESS && cfg && (cfg->flags & MA_FLAG_STRICT_WIREGUARD) && remote &&
	    remote->node_id != 0 && skb->ingress_ifindex != cfg->wg_ifindex) {
		count(MA_DROP_NOT_VIA_WIREGUARD);
		return 0;
	}

	/* An unknown local address (identity 0, or a pod of this node not known yet) has no policy. */
	if (!local || !remote || local->node_id != 0 || local->identity == 0 ||
	    local->identity == MA_ID_UNRESOLVED || remote->identity == 0) {
		count(MA_PASS_UNKNOWN_IDENTITY);
		return 1;
	}

	/* A remote address inside a pod CIDR without a workload entry looks up (local,
	 * MA_ID_UNRESOLVED), then the wildcard: a local identity with a rule fails closed. */
	pol = lookup_policy(local->identity, remote->identity);
	MA_BENCH_STOP(3, pol);
	if (!pol || pol->auth_type == 0) {
		count(MA_PASS_NO_POLICY);
		return 1;
	}
	unresolved = remote->identity == MA_ID_UNRESOLVED;
	pass = pol->mode == MA_MODE_PERMISSIVE;

	ak.local_id = local->identity;
	ak.remote_id = remote->identity;
	ak.remote_node = remote->node_id;
	ak.auth_type = pol->auth_type;

	now = bpf_ktime_get_boot_ns();
	if (unresolved) {
		/* No entry can exist for an address without identity. */
		count(pass ? MA_PASS_PERMISSIVE : MA_DROP_UNRESOLVED_POD_IP);
	} else {
		av = bpf_map_lookup_elem(&ma_auth, &ak);
		MA_BENCH_STOP(4, av && av->expiry_boot_ns > now);
		if (av) {
			expiry = av->expiry_boot_ns;
			if (expiry > now) {
				if (slot)
					cache_store(slot, &fk, gen, expiry);
				count(MA_PASS_AUTHENTICATED);
				return 1;
			}
		}
		/* Permissive: the packet passes but is counted, and the handshake is still asked for. */
		count(pass ? MA_PASS_PERMISSIVE : av ? MA_DROP_AUTH_EXPIRED : MA_DROP_AUTH_MISSING);
	}

	throttle_ns = cfg && cfg->throttle_ns ? cfg->throttle_ns : MA_DEFAULT_THROTTLE_NS;
	last = bpf_map_lookup_elem(&ma_throttle, &ak);
	if (last && now - *last < throttle_ns) {
		count(MA_SIGNAL_THROTTLED);
		return pass;
	}
	bpf_map_update_elem(&ma_throttle, &ak, &now, BPF_ANY);

	struct ma_signal sig = {
		.local_id = ak.local_id,
		.remote_id = ak.remote_id,
		.remote_node = ak.remote_node,
		.auth_type = ak.auth_type,
		.direction = sem == MA_SEM_EGRESS ? MA_DIR_EGRESS : MA_DIR_INGRESS,
		.flags = (pass ? MA_SIG_PERMISSIVE : 0) | (unresolved ? MA_SIG_UNRESOLVED : 0),
		.boot_ns = now,
	};
	/* The dropped SYN of an egress-semantics tc program crossed no program of this node yet
	 * but this one: sent again from the node's network namespace, it takes the same route. */
	if (is_tc && sem == MA_SEM_EGRESS && !pass && !unresolved)
		sig.syn_len = capture_syn(skb, sig.syn);
	if (bpf_ringbuf_output(&ma_signals, &sig, sizeof(sig), 0) < 0) {
		/* Let the next packet try again instead of waiting out the window. */
		bpf_map_delete_elem(&ma_throttle, &ak);
		verdict = MA_SIGNAL_RINGBUF_FULL;
	} else {
		verdict = MA_SIGNAL_SENT;
	}
	count(verdict);
	return pass;
}

/*
 * Pass returns TC_ACT_UNSPEC so that filters of other software at later priorities still run.
 *
 * The egress-semantics program drops with TC_ACT_STOLEN, not TC_ACT_SHOT: on a tc egress hook of a
 * device whose sender is a local socket, SHOT makes the transmit report NET_XMIT_DROP, which TCP
 * treats as local congestion and answers by retrying after 500 ms (TCP_RESOURCE_PROBE_INTERVAL)
 * instead of its retransmission timeout, defeating the short SYN RTO of ma_sockops. STOLEN frees
 * the packet and reports success, so the sender sees a loss on the wire. Drops are counted in
 * ma_counters either way.
 */
SEC("tc")
int meshauth_tc_egress(struct __sk_buff *skb)
{
	return decide(skb, MA_SEM_EGRESS, 1) ? TC_ACT_UNSPEC : TC_ACT_STOLEN;
}

SEC("tc")
int meshauth_tc_ingress(struct __sk_buff *skb)
{
	return decide(skb, MA_SEM_INGRESS, 1) ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

SEC("cgroup_skb/egress")
int ma_cgrp_egress(struct __sk_buff *skb)
{
	return decide(skb, MA_SEM_EGRESS, 0);
}

SEC("cgroup_skb/ingress")
int ma_cgrp_ingress(struct __sk_buff *skb)
{
	return decide(skb, MA_SEM_INGRESS, 0);
}

/*
 * A cold pair's first SYN is dropped by the programs above until the handshake has written the
 * auth entry; the kernel would then retransmit it only after the initial SYN RTO (1 s). For an
 * active open whose pair requires authentication and has no live entry, answer
 * BPF_SOCK_OPS_TIMEOUT_INIT with a short RTO (ma_config.syn_rto_ms, in jiffies of ma_config.hz) so
 * that a retransmission follows the handshake closely. Later SYN retransmissions are spaced from
 * this RTO as usual (linear for the first net.ipv4.tcp_syn_linear_timeouts on kernels that have
 * it, then exponential), and the kernel derives the SYN give-up time from the same value, so a
 * connect() to a pair that never gets authenticated fails sooner than with the 1 s default.
 *
 * The kernel also asks again (TIMEOUT_INIT) when a SYN retransmission timer fires, to compute the
 * give-up time; the answer is the same while the pair is unauthenticated, but the counter only
 * moves for the first ask of a connection (no retransmission yet), so it counts connections.
 *
 * Only the local side's view is used: local address -> identity on this node (node 0), remote
 * address -> identity on another node (an unresolved pod address of another node counts: its
 * SYN is dropped until the pod is known and authenticated). Other sockets, other ops and other programs' replies are
 * left alone; the program always returns 1 (never rejects).
 */
static __always_inline void sock_ops_addr(__u8 addr[16], __u32 family, __u32 ip4, const __u32 ip6[4])
{
	if (family == 2 /* AF_INET */) {
		__builtin_memset(addr, 0, 10);
		addr[10] = 0xff;
		addr[11] = 0xff;
		__builtin_memcpy(&addr[12], &ip4, 4);
	} else {
		__builtin_memcpy(&addr[0], &ip6[0], 4);
		__builtin_memcpy(&addr[4], &ip6[1], 4);
		__builtin_memcpy(&addr[8], &ip6[2], 4);
		__builtin_memcpy(&addr[12], &ip6[3], 4);
	}
}

/* Kernel default SYN give-up span: 1 s initial RTO, 6 retries: 1+2+...+64 = 127 s. */
#define MA_SYN_GIVE_UP_MS 127000
#define MA_MAX_TCP_SYNCNT 127
#define MA_SOL_TCP 6
#define MA_TCP_SYNCNT 7

/* Smallest retry count whose exponential series from rto_ms spans MA_SYN_GIVE_UP_MS (>= 6). */
static __always_inline int syn_retries_for(__u64 rto_ms)
{
	__u64 total = rto_ms, t = rto_ms;
	int n = 0;

	for (int i = 0; i < 24; i++) {
		if (total >= MA_SYN_GIVE_UP_MS)
			break;
		t = t * 2 > 120000 ? 120000 : t * 2;
		total += t;
		n++;
	}
	if (n < 6)
		n = 6;
	return n > MA_MAX_TCP_SYNCNT ? MA_MAX_TCP_SYNCNT : n;
}

SEC("sockops")
int ma_sockops(struct bpf_sock_ops *skops)
{
	struct ma_flow_key fk __attribute__((aligned(8))) = {};
	struct ma_ipcache_value *local, *remote;
	struct ma_policy_value *pol;
	struct ma_auth_key ak = {};
	struct ma_auth_value *av;
	struct ma_config *cfg;
	__u32 zero = 0, family, lip6[4] = {}, rip6[4] = {};
	__u64 ms, hz, jiffies;

	if (skops->op != BPF_SOCK_OPS_TIMEOUT_INIT || !skops->is_fullsock || skops->state != BPF_TCP_SYN_SENT)
		return 1;
	family = skops->family;
	if (family == 10 /* AF_INET6 */) {
		/* One 4-byte context load each (the verifier refuses the 8-byte loads clang would merge them into). */
		lip6[0] = MA_READ_ONCE(skops->local_ip6[0]);
		lip6[1] = MA_READ_ONCE(skops->local_ip6[1]);
		lip6[2] = MA_READ_ONCE(skops->local_ip6[2]);
		lip6[3] = MA_READ_ONCE(skops->local_ip6[3]);
		rip6[0] = MA_READ_ONCE(skops->remote_ip6[0]);
		rip6[1] = MA_READ_ONCE(skops->remote_ip6[1]);
		rip6[2] = MA_READ_ONCE(skops->remote_ip6[2]);
		rip6[3] = MA_READ_ONCE(skops->remote_ip6[3]);
		sock_ops_addr(fk.src, family, 0, lip6);
		sock_ops_addr(fk.dst, family, 0, rip6);
	} else if (family == 2 /* AF_INET */) {
		sock_ops_addr(fk.src, family, skops->local_ip4, lip6);
		sock_ops_addr(fk.dst, family, skops->remote_ip4, rip6);
	} else {
		return 1;
	}

	local = lookup_ipcache(fk.src);
	remote = lookup_ipcache(fk.dst);
	if (!local || !remote || local->node_id != 0 || remote->node_id == 0 || local->identity == 0 ||
	    remote->identity == 0)
		return 1;
	pol = lookup_policy(local->identity, remote->identity);
	/* Permissive pairs are not dropped: their SYNs need no early retransmission. */
	if (!pol || pol->auth_type == 0 || pol->mode == MA_MODE_PERMISSIVE)
		return 1;

	ak.local_id = local->identity;
	ak.remote_id = remote->identity;
	ak.remote_node = remote->node_id;
	ak.auth_type = pol->auth_type;
	av = bpf_map_lookup_elem(&ma_auth, &ak);
	if (av && av->expiry_boot_ns > bpf_ktime_get_boot_ns())
		return 1;

	cfg = bpf_map_lookup_elem(&ma_config, &zero);
	ms = cfg && cfg->syn_rto_ms ? cfg->syn_rto_ms : MA_DEFAULT_SYN_RTO_MS;
	hz = cfg && cfg->hz ? cfg->hz : MA_DEFAULT_HZ;
	jiffies = (ms * hz + 999) / 1000;
	skops->reply = jiffies ? jiffies : 1;
	if (skops->total_retrans == 0) {
		/*
		 * The kernel gives up on a SYN after a number of retransmissions, not a time: with a
		 * 50 ms start that would be seconds instead of the usual two minutes. Raise the count so
		 * the exponential series still spans about as long as the default one.
		 */
		int retries = syn_retries_for(ms);

		bpf_setsockopt(skops, MA_SOL_TCP, MA_TCP_SYNCNT, &retries, sizeof(retries));
		count(MA_SYN_RTO_SHORTENED);
	}
	return 1;
}
