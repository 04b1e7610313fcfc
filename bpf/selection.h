/* Which processes are traced (TRACE_PIDS, TRACE_COMMS, containers, PROBE_ALL_PID), and the
 * per-thread state that remembers the answer: task storage in the current set, hash maps keyed by
 * thread id in the compat set. */
#ifndef COLLECTOR_SELECTION_H
#define COLLECTOR_SELECTION_H

#include "maps.h"

#ifdef COLLECTOR_COMPAT
/* The value a new thread_state starts from (zeros; a map value can be an update's source, a
 * stack copy would crowd the 512-byte stack) */
static struct thread_state blank_thread_state;
#endif

/* This thread's state; created when create is set (a call worth remembering begins). */
static __always_inline struct thread_state *thread_state(int create)
{
#ifndef COLLECTOR_COMPAT
	struct task_struct *task = bpf_get_current_task_btf();
	struct thread_state *t = bpf_task_storage_get(&threads, task, 0,
							create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
#else
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct thread_state *t = bpf_map_lookup_elem(&threads_compat, &tid);
	if (!t && create) {
		bpf_map_update_elem(&threads_compat, &tid, &blank_thread_state, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&threads_compat, &tid);
	}
#endif
	if (!t && create)
		count_drop(DROP_ACTIVE_CALLS_FULL, 1);
	return t;
}

/* The current thread's untraced mark, made when create is set (NULL when there is no room). */
static __always_inline struct untraced *untraced_mark(int create)
{
#ifndef COLLECTOR_COMPAT
	return bpf_task_storage_get(&untraced_threads, bpf_get_current_task_btf(), 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
#else
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (create) {
		struct untraced blank = {};
		bpf_map_update_elem(&untraced_threads_compat, &tid, &blank, BPF_NOEXIST);
	}
	return bpf_map_lookup_elem(&untraced_threads_compat, &tid);
#endif
}

static __always_inline void forget_untraced_mark(void)
{
#ifndef COLLECTOR_COMPAT
	bpf_task_storage_delete(&untraced_threads, bpf_get_current_task_btf());
#else
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&untraced_threads_compat, &tid);
#endif
}

static __always_inline int comm_equals(const char *a, const volatile char *b)
{
#pragma unroll
	for (int i = 0; i < COMM_LEN; i++) {
		if (a[i] != b[i])
			return 0;
		if (a[i] == 0)
			return 1;
	}
	return 1;
}

static __always_inline int should_trace(__u32 tgid)
{
	if (tgid == settings.collector_tgid)
		return 0;
	int selected = 0;
	if (settings.filter_pids && bpf_map_lookup_elem(&trace_pids, &tgid))
		selected = 1;
	if (!selected && settings.trace_comm_count > 0) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		char comm[COMM_LEN];
		BPF_CORE_READ_STR_INTO(&comm, task, group_leader, comm);
#pragma unroll
		for (int i = 0; i < MAX_COMMS; i++) {
			if (i < settings.trace_comm_count && comm_equals(comm, settings.trace_comms[i]))
				selected = 1;
		}
	}
	if (settings.filter_pids || settings.trace_comm_count > 0)
		return selected; /* an explicit selection wins over the container rule */
	if (settings.probe_all_pid)
		return 1;
	/* Only processes in a container: a mount namespace AND a pid namespace other than the host's
	 * (a host service with a private mount namespace, systemd's PrivateTmp, is not a container). */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 mnt = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	__u32 pidns = BPF_CORE_READ(task, nsproxy, pid_ns_for_children, ns.inum);
	return mnt != settings.host_mnt_ns && pidns != settings.host_pid_ns;
}

/* The first 8 bytes of the process's name (the group leader's comm, as should_trace() reads it). */
static __always_inline __u64 process_name_head(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 head = 0;
	BPF_CORE_READ_INTO(&head, task, group_leader, comm);
	return head;
}

/* Whether the current thread's process is traced; *t is its state when it has one. A thread found
 * untraced is remembered in untraced_threads (not counted when there is no room: it is asked again). */
static __always_inline int thread_traced(__u32 tgid, struct thread_state **t)
{
	*t = thread_state(0);
	if (*t && (*t)->traced)
		return 1;
	struct untraced *u = untraced_mark(0);
	__u64 head = settings.trace_comm_count > 0 ? process_name_head() : 0;
	if (u && u->comm_head == head)
		return 0;
	if (should_trace(tgid)) {
		if (u)
			forget_untraced_mark();
		return 1;
	}
	u = untraced_mark(1);
	if (u)
		u->comm_head = head;
	return 0;
}

/* thread_traced() where the caller has no use for the state. */
static __always_inline int process_traced(__u32 tgid)
{
	struct thread_state *t;
	return thread_traced(tgid, &t);
}

/* The state of a thread that is traced, made if it has none yet. */
static __always_inline struct thread_state *traced_thread_state(struct thread_state *t)
{
	if (!t)
		t = thread_state(1);
	if (t)
		t->traced = 1;
	return t;
}

#endif
