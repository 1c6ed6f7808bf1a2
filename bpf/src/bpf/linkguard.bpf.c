// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * linkguard's only BPF program: one uprobe.multi program attached (by the Rust side) to many function entry
 * offsets of one file per link. The BPF cookie of each attach point is the function's probe index; the program
 * counts calls per index in a per-CPU array and optionally reports the first call of each index.
 *
 * Everything is configured before load through `const volatile` globals (.rodata): the loader freezes that map,
 * so the verifier treats the values as constants and prunes the disabled branches (no helper call, no map
 * access for a feature that is off).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "linkguard.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 lg_flags = 0;
/* st_dev and st_ino of /proc/<pid>/ns/pid; bpf_get_ns_current_pid_tgid() compares both. */
const volatile __u64 lg_pidns_dev = 0;
const volatile __u64 lg_pidns_ino = 0;
/* Same value as lg_counters' max_entries (set by the loader). */
const volatile __u32 lg_max_probes = 1;
/* Wake the ring buffer consumer on every Nth first-seen record only (N >= 1). */
const volatile __u32 lg_wakeup_every = 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1); /* resized to max_probes by the loader */
} lg_counters SEC(".maps");

/* Per-cookie "first-seen already reported" flag: shared by all CPUs, claimed with a compare-and-swap. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1); /* resized to max_probes by the loader */
} lg_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, LG_STAT_COUNT);
} lg_stats SEC(".maps");

/* Total first-seen records ever reserved, to pick every Nth for a forced wakeup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} lg_event_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024); /* resized by the loader; a power-of-two multiple of the page size */
} lg_events SEC(".maps");

static __always_inline void stat_inc(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&lg_stats, &index);

	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline void report_first_seen(__u32 cookie, __u32 pid, __u32 tid, __u32 host_pid)
{
	__u32 zero = 0;
	__u32 *seen = bpf_map_lookup_elem(&lg_seen, &cookie);
	struct lg_first_seen *event;
	__u64 *seq, flags = BPF_RB_NO_WAKEUP;

	/* Only the CPU that flips 0 -> 1 reports; concurrent first calls on other CPUs stay counted only. */
	if (!seen || __sync_val_compare_and_swap(seen, 0, 1) != 0)
		return;

	event = bpf_ringbuf_reserve(&lg_events, sizeof(*event), 0);
	if (!event) {
		/* Full ring: re-arm so the next call of this function retries instead of losing it for good. */
		__sync_lock_test_and_set(seen, 0);
		stat_inc(LG_STAT_EVENTS_DROPPED);
		return;
	}
	event->ktime_ns = bpf_ktime_get_ns();
	event->pid = pid;
	event->cookie = cookie;
	event->host_pid = host_pid;
	event->tid = tid;

	/*
	 * Waking the consumer costs an irq_work per record (measured on the project's VM: ~10 us per event with
	 * default wakeups against ~5 us batched). Force a wakeup every Nth record only; the consumer also drains on its own timer,
	 * so a quiet tail of fewer than N records is still read.
	 */
	seq = bpf_map_lookup_elem(&lg_event_seq, &zero);
	if (seq && (__sync_fetch_and_add(seq, 1) + 1) % lg_wakeup_every == 0)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(event, flags);
	stat_inc(LG_STAT_EVENTS_SENT);
}

SEC("uprobe.multi")
int linkguard_count(void *ctx)
{
	__u64 cookie64 = bpf_get_attach_cookie(ctx);
	__u64 host_ids = bpf_get_current_pid_tgid();
	__u32 pid = host_ids >> 32, tid = (__u32)host_ids, cookie;
	__u64 *counter;

	if (lg_flags & LG_FLAG_PIDNS_FILTER) {
		struct bpf_pidns_info ns = {};

		/*
		 * The helper fails (-EINVAL) unless the current task's active pid namespace has exactly this
		 * dev/inode pair; with AllProcesses scope this is what keeps other containers mapping the same
		 * image layer out of the counts. A task in a nested child namespace does not match either.
		 */
		if (bpf_get_ns_current_pid_tgid(lg_pidns_dev, lg_pidns_ino, &ns, sizeof(ns))) {
			stat_inc(LG_STAT_FILTERED);
			return 0;
		}
		pid = ns.tgid;
		tid = ns.pid;
	}

	if (cookie64 >= lg_max_probes) {
		stat_inc(LG_STAT_BAD_COOKIE);
		return 0;
	}
	cookie = (__u32)cookie64;

	counter = bpf_map_lookup_elem(&lg_counters, &cookie);
	if (!counter) {
		stat_inc(LG_STAT_BAD_COOKIE);
		return 0;
	}
	/*
	 * Atomic although the slot is per-CPU: uprobe BPF programs run with migration disabled but remain
	 * preemptible on a CONFIG_PREEMPT(_DYNAMIC) kernel, so another task on this CPU could interleave a
	 * plain load/add/store and lose an increment. An uncontended locked add costs a few ns next to the
	 * multi-microsecond trap.
	 */
	__sync_fetch_and_add(counter, 1);

	if (lg_flags & LG_FLAG_FIRST_SEEN)
		report_first_seen(cookie, pid, tid, host_ids >> 32);
	return 0;
}
