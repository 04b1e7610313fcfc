/* Processes: exec (user space looks for TLS libraries in the new program) and exit (its
 * connections are over). */
#include "common.h"
#include "maps.h"
#include "selection.h"
#include "emit.h"

SEC("tracepoint/sched/sched_process_exec")
int PROG(sched_process_exec)(struct trace_event_raw_sched_process_exec *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	/* a new program: its name and namespaces may differ, so the selection is made again */
#ifndef COLLECTOR_COMPAT
	struct thread_state *t = thread_state(0);
	if (t)
		t->traced = 0;
#else
	/* no call is in flight across exec: the state goes, under the thread's id before exec too
	 * (a thread other than the leader takes the leader's id when it execs) */
	__u32 old_tid = BPF_CORE_READ(ctx, old_pid);
	bpf_map_delete_elem(&threads_compat, &old_tid);
	bpf_map_delete_elem(&untraced_threads_compat, &old_tid);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&threads_compat, &tid);
#endif
	forget_untraced_mark();
	if (!should_trace(tgid))
		return 0;
	struct exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL, 1);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->header.timestamp_ns = bpf_ktime_get_ns();
	e->header.type = EVENT_EXEC;
	e->header.tgid = tgid;
	/* exec is rare and user space wants to look at the new process soon */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}

/* The record's field as kernels from 6.16 have it, declared here so that the object builds from
 * any kernel's vmlinux.h (CO-RE matches it by name, without the ___ suffix). */
struct trace_event_raw_sched_process_exit___since_6_16 {
	bool group_dead;
} __attribute__((preserve_access_index));

/* Whether the exiting thread is its process's last. The record says so from 6.16 on; before, the
 * count of live threads (do_exit has taken the exiting one off it before this tracepoint) does:
 * then threads exiting together can each see 0, and user space takes the repeated exit as one. */
static __always_inline int group_dead(void *ctx)
{
	struct trace_event_raw_sched_process_exit___since_6_16 *record = ctx;
	if (bpf_core_field_exists(record->group_dead))
		return BPF_CORE_READ(record, group_dead);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, signal, live.counter) == 0;
}

SEC("tracepoint/sched/sched_process_exit")
int PROG(sched_process_exit)(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
#ifdef COLLECTOR_COMPAT
	__u32 tid = (__u32)id;
	bpf_map_delete_elem(&threads_compat, &tid);
	bpf_map_delete_elem(&untraced_threads_compat, &tid);
#endif
	/* the last thread of the process, whichever it is (not the leader: it may exit first) */
	if (!group_dead(ctx) || !should_trace(tgid))
		return 0;
	struct exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL, 1);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->header.timestamp_ns = bpf_ktime_get_ns();
	e->header.type = EVENT_EXIT;
	e->header.tgid = tgid;
	bpf_ringbuf_submit(e, ringbuf_flags(sizeof(*e)));
	return 0;
}
