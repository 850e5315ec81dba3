// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Baselines for datapath benchmarks: a tc program that does nothing, and one that only reads the
 * clock the auth-map expiry check reads (bpf_ktime_get_boot_ns), to show that helper's share. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int bench_empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

SEC("tc")
int bench_clock(struct __sk_buff *skb)
{
	return bpf_ktime_get_boot_ns() ? TC_ACT_OK : TC_ACT_SHOT;
}
