// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * linkguard's only BPF program: one uprobe.multi program attached (by the Rust side) to many function entry
 * offsets of one file per link. The low 32 bits of each attach point's BPF cookie are the function's probe
 * index, the high 32 bits per-point flags (linkguard.h); the program counts calls per index in a per-CPU
 * array and optionally reports the first call of each index. A point flagged LG_COOKIE_EXTERNAL_ONLY counts
 * only calls made from outside its own object (see caller_of()).
 *
 * Everything is configured before load through `const volatile` globals (.rodata): the loader freezes that map,
 * so the verifier treats the values as constants and prunes the disabled branches (no helper call, no map
 * access for a feature that is off).
 */
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

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
/* With LG_FLAG_FIRST_SEEN: report an external-only point after this many internal calls (0: never). */
const volatile __u32 lg_internal_budget = 0;

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

/*
 * Per cookie of an external-only point, where its function lies in the executable segment (PT_LOAD) of
 * its file: bytes from the segment's start to the function (low 32 bits) and from the function to the
 * segment's end (high 32 bits). Written by the loader from the file's program headers; 0: unknown.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1); /* resized to max_probes by the loader */
} lg_segments SEC(".maps");

/* Per-cookie calls from the function's own object in this window (external-only points, first-seen mode). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1); /* resized to max_probes by the loader when the budget is in use */
} lg_internal SEC(".maps");

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

static __always_inline void report_first_seen(__u32 cookie, __u32 pid, __u32 tid, __u32 host_pid,
					      __u32 event_flags)
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
	event->flags = event_flags;
	event->reserved = 0;

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

enum caller { CALLER_EXTERNAL, CALLER_INTERNAL, CALLER_UNKNOWN };

#if defined(bpf_target_x86)
/* The rel32/disp32 at code[at..at + 4] (x86 is little-endian). */
#define LG_DISP32(code, at)                                                                         \
	((__s32)((__u32)(code)[at] | (__u32)(code)[(at) + 1] << 8 | (__u32)(code)[(at) + 2] << 16 |   \
		 (__u32)(code)[(at) + 3] << 24))

/*
 * Whether a call from outside the function's object was in fact made to ANOTHER function of the object,
 * which then jumped to this one (a tail call: `return OSSL_PARAM_locate(...)` compiled to a jmp leaves the
 * original caller's return address on the stack). The call instruction that ends at the return address
 * says whom the caller called: `call rel32` to a PLT stub (`[endbr64] [bnd] jmp *disp32(%rip)`), or
 * `call *disp32(%rip)` (-fno-plt); both go through a GOT slot, which holds the called function's address.
 * When that address lies in this function's segment but is not this function, the object's own code
 * jumped here: the call between objects was to the other function (probed, and counted, on its own).
 * Anything else - a direct call of this function, a call through a register, unreadable code, a lazy
 * binding not yet resolved - is a call to this function.
 *
 * Not inlined: its locals stay out of the main program's stack frame (see caller_of()), and it runs for
 * external calls only, which are counted anyway.
 */
static __noinline int reached_by_tail_call(__u64 ret, __u64 ip, __u64 start, __u64 size)
{
	__u8 code[12] = {};
	__u64 slot, target;

	if (bpf_probe_read_user(code, 6, (void *)(ret - 6)))
		return 0;
	if (code[0] == 0xff && code[1] == 0x15) {
		slot = ret + LG_DISP32(code, 2); /* call *disp32(%rip) */
	} else if (code[1] == 0xe8) {
		target = ret + LG_DISP32(code, 2); /* call rel32 */
		if (target == ip || bpf_probe_read_user(code, 11, (void *)target))
			return 0;
		/* The PLT stub's jmp *disp32(%rip), after an optional endbr64 and an optional bnd prefix. */
		if (code[0] == 0xff && code[1] == 0x25)
			slot = target + 6 + LG_DISP32(code, 2);
		else if (code[0] == 0xf2 && code[1] == 0xff && code[2] == 0x25)
			slot = target + 7 + LG_DISP32(code, 3);
		else if (code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e && code[3] == 0xfa &&
			 code[4] == 0xff && code[5] == 0x25)
			slot = target + 10 + LG_DISP32(code, 6);
		else if (code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e && code[3] == 0xfa &&
			 code[4] == 0xf2 && code[5] == 0xff && code[6] == 0x25)
			slot = target + 11 + LG_DISP32(code, 7);
		else
			return 0;
	} else {
		return 0;
	}
	if (bpf_probe_read_user(&target, sizeof(target), (void *)slot))
		return 0;
	return target != ip && target - start < size;
}
#endif

/*
 * Whether the probed function was called from its own object's code (a library calling one of its own
 * exported functions, directly, through its PLT or through a function pointer). The probe sits on the
 * function's first instruction, so on x86-64 the call's return address is the word on top of the user
 * stack, and the trapped instruction pointer is the function's address (handle_swbp() sets it to the
 * breakpoint address before running the handlers). The dynamic loader maps an object's executable segment
 * whole and at one offset, so that segment spans [ip - before, ip + after) in every process, whatever the
 * load address; a return address inside it is a call from the same object. No lock, no kernel structure,
 * no per-process state: two comparisons after one read of the user stack. A return address outside it is
 * looked at once more, for a tail call (reached_by_tail_call()).
 *
 * A call from another mapping of the same file (a second copy loaded with dlmopen(), or a second executable
 * segment) is outside that range and counts as external. Unknown (the stack word cannot be read, no segment
 * recorded, not x86-64) counts the call too: an internal call may show as unexpected, an external call is
 * never hidden.
 */
static __always_inline enum caller caller_of(struct pt_regs *regs, __u32 cookie)
{
#if defined(bpf_target_x86)
	__u64 *segment = bpf_map_lookup_elem(&lg_segments, &cookie);
	__u64 ret, ip = PT_REGS_IP(regs), start, size;

	if (!segment || !*segment)
		return CALLER_UNKNOWN;
	if (bpf_probe_read_user(&ret, sizeof(ret), (void *)PT_REGS_SP(regs)))
		return CALLER_UNKNOWN;
	start = ip - (__u32)*segment;
	size = (__u64)(__u32)*segment + (*segment >> 32);
	/* One unsigned comparison: ret below start wraps around to a huge value. */
	if (ret - start < size)
		return CALLER_INTERNAL;
	return reached_by_tail_call(ret, ip, start, size) ? CALLER_INTERNAL : CALLER_EXTERNAL;
#else
	/* The return address is in a register on other architectures: not implemented. */
	return CALLER_UNKNOWN;
#endif
}

/*
 * An internal call of an external-only point is not counted. In first-seen (coverage) mode it is tallied per
 * cookie: a function a library calls from inside itself all the time would otherwise trap on every call
 * for the whole window (it is never "seen"), so after lg_internal_budget such calls it is reported with
 * LG_EVENT_INTERNAL_BUDGET and user space stops trapping it until the next window, as after a first call.
 */
static __always_inline void count_internal(__u32 cookie, __u32 pid, __u32 tid, __u32 host_pid)
{
	__u32 *internal;

	stat_inc(LG_STAT_INTERNAL_CALLS);
	if (!(lg_flags & LG_FLAG_FIRST_SEEN) || lg_internal_budget == 0)
		return;
	internal = bpf_map_lookup_elem(&lg_internal, &cookie);
	if (internal && __sync_fetch_and_add(internal, 1) + 1 == lg_internal_budget) {
		stat_inc(LG_STAT_INTERNAL_BUDGET);
		report_first_seen(cookie, pid, tid, host_pid, LG_EVENT_INTERNAL_BUDGET);
	}
}

SEC("uprobe.multi")
int linkguard_count(struct pt_regs *ctx)
{
	__u64 cookie64 = bpf_get_attach_cookie(ctx);
	__u64 host_ids = bpf_get_current_pid_tgid();
	__u32 pid = host_ids >> 32, tid = (__u32)host_ids, cookie, cookie_flags;
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

	cookie = (__u32)cookie64;
	cookie_flags = cookie64 >> 32;
	if (cookie >= lg_max_probes || (cookie_flags & ~LG_COOKIE_KNOWN_FLAGS)) {
		stat_inc(LG_STAT_BAD_COOKIE);
		return 0;
	}

	/* Declared calls never take this branch: their cost is the trap plus the counter, as before. */
	if (cookie_flags & LG_COOKIE_EXTERNAL_ONLY) {
		enum caller caller = caller_of(ctx, cookie);

		if (caller == CALLER_INTERNAL) {
			count_internal(cookie, pid, tid, host_ids >> 32);
			return 0;
		}
		if (caller == CALLER_UNKNOWN)
			stat_inc(LG_STAT_CALLER_UNKNOWN);
	}

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
		report_first_seen(cookie, pid, tid, host_ids >> 32, 0);
	return 0;
}
