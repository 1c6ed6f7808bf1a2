/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types and constants shared by linkguard.bpf.c and the Rust loader (bpf/src/abi.rs mirrors every item
 * here with #[repr(C)] and the same size/offset assertions, so a change on one side fails to compile on
 * the other instead of silently misreading the ring buffer).
 */
#ifndef LINKGUARD_H
#define LINKGUARD_H

#include <linux/types.h>

/* Bits of the `lg_flags` load-time constant. */
#define LG_FLAG_PIDNS_FILTER 0x1u /* count only tasks whose active pid namespace is (lg_pidns_dev, lg_pidns_ino) */
#define LG_FLAG_FIRST_SEEN 0x2u   /* emit one lg_first_seen record per cookie until user space re-arms it */

/*
 * A BPF cookie is 64 bits: the low 32 are the counter index, the high 32 are these per-point flags.
 * LG_COOKIE_EXTERNAL_ONLY: count a call only when the caller's code lies outside the object that defines the
 * probed function (a library calling its own exported function is not counted, only tallied); needs the
 * cookie's entry in `lg_segments`.
 */
#define LG_COOKIE_EXTERNAL_ONLY 0x1u
#define LG_COOKIE_KNOWN_FLAGS LG_COOKIE_EXTERNAL_ONLY

/* Indices of the per-CPU `lg_stats` array: what the program did besides counting. */
enum lg_stat {
	LG_STAT_FILTERED = 0,        /* traps from tasks outside the configured pid namespace (not counted) */
	LG_STAT_BAD_COOKIE = 1,      /* cookie >= max probes or unknown flags: a caller bug, the trap is not counted */
	LG_STAT_EVENTS_SENT = 2,     /* first-seen records submitted */
	LG_STAT_EVENTS_DROPPED = 3,  /* ring buffer full: the cookie is re-armed so a later call retries */
	LG_STAT_INTERNAL_CALLS = 4,  /* external-only points called from their own object (not counted) */
	LG_STAT_CALLER_UNKNOWN = 5,  /* external-only points whose caller could not be placed (counted) */
	LG_STAT_INTERNAL_BUDGET = 6, /* external-only points that reached lg_internal_budget in a window */
	LG_STAT_COUNT = 7,
};

/* Bits of lg_first_seen.flags. */
#define LG_EVENT_INTERNAL_BUDGET 0x1u /* not a counted call: the point reached its internal-call budget */

/* One record in the `lg_events` ring buffer, sent the first time a cookie fires. */
struct lg_first_seen {
	__u64 ktime_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid;      /* tgid as seen in the filter's pid namespace, or the init-namespace tgid without a filter */
	__u32 cookie;   /* the counter index given at attach time (without the cookie flags) */
	__u32 host_pid; /* init-namespace tgid (bpf_get_current_pid_tgid() >> 32) */
	__u32 tid;      /* thread id, same namespace as `pid` */
	__u32 flags;    /* LG_EVENT_* */
	__u32 reserved; /* zero */
};

_Static_assert(sizeof(struct lg_first_seen) == 32, "lg_first_seen layout is part of the Rust ABI");

#endif /* LINKGUARD_H */
