// SPDX-License-Identifier: GPL-2.0
/* HTTP capture at the socket syscalls (tracepoints) and at the TLS libraries (uprobes).
 *
 * The kernel this runs on has no kprobes and no fentry, so everything here is a syscall
 * tracepoint or a uprobe. Arguments are saved at sys_enter in the thread's local storage and the
 * data is read at sys_exit, when the byte count is known. Sockets are recognised from the fd table of the
 * task (not from having seen accept/connect), so connections opened before the collector started
 * are captured too. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "collector.h"

/* One object, two sets of the same programs, chosen at load by probing the kernel (the log says
 * which and why):
 * - current (5.17 and later): per-thread state in task storage, loops with bpf_loop;
 * - compat (built with COLLECTOR_COMPAT, programs named *_compat; 5.8 to 5.16, e.g. 5.10): a hash
 *   map keyed by thread id, bounded loops with smaller limits (the verifier walks every iteration),
 *   and no atomic fetch. The Makefile compiles this file twice and links the two objects: maps are
 *   weak (merged), the settings are defined by the current set only. */
#ifdef COLLECTOR_COMPAT
#define PROG(name) name##_compat
#else
#define PROG(name) name
char LICENSE[] SEC("license") = "GPL";
#endif
/* the name argument is expanded before BPF_KPROBE pastes it */
#define PROG_KPROBE(...) BPF_KPROBE(__VA_ARGS__)
#define PROG_KRETPROBE(...) BPF_KRETPROBE(__VA_ARGS__)
#define SHARED_MAP __weak

/* Copies user memory straight into a ring-buffer record (kernel 6.16 and later). Weak: on an older
 * kernel libbpf leaves it unresolved. */
extern int bpf_probe_read_user_dynptr(struct bpf_dynptr *dptr, __u64 off, __u64 size,
				      const void *unsafe_ptr__ign) __weak __ksym;
#ifndef COLLECTOR_COMPAT
#define has_direct_copy() (bpf_probe_read_user_dynptr != NULL && !settings.direct_copy_off)
/* Data events are reserved at their exact size in the ring buffer and filled there (ring-buffer
 * dynptrs, 5.19): with the kfunc above in one copy, else in power-of-two pieces. Before that they
 * are built in a per-CPU scratch event and copied into the ring. */
#define copies_into_ring() (has_direct_copy() || settings.ringbuf_dynptr)
#else
#define has_direct_copy() 0
#define copies_into_ring() 0
#endif
#define DATA_HEADER_SIZE offsetof(struct data_event, data)
#define MAX_SEGMENTS 4 /* buffers of one call coalesced into one data event */

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2
#ifndef COLLECTOR_COMPAT
#define MAX_CHUNKS_LIMIT 64 /* hard ceiling for max_chunks_per_call */
#define MAX_IOV_WALK 1024   /* iovec entries walked per call (UIO_MAXIOV: all of them; Kestrel writes
			     * a 100 KiB gRPC message as 25+ pipe segments in one sendmsg) */
#define MAX_MMSG_WALK 4     /* messages of sendmmsg/recvmmsg walked per call */
#else
/* without bpf_loop the verifier walks every iteration of every nested loop: smaller walks (what
 * is past them is a counted gap, as ever) */
#define MAX_CHUNKS_LIMIT 16
#define MAX_IOV_WALK 8
#define MAX_MMSG_WALK 2
#endif
#define MAX_MMSG_VLEN 1024  /* UIO_MAXIOV: the most messages one call can carry */
#define TLS_NEST_MAX_STACK (256 * 1024)      /* a nested TLS call is entered this close below the running one */
#define TLS_NEST_MAX_NS (10ULL * 1000000000) /* ... and this soon after it began */

#ifdef COLLECTOR_COMPAT
extern const volatile struct collector_config settings;
#else
const volatile struct collector_config settings = {
	.capture_plain = 1,
	.capture_tls = 1,
	.chunk_size = MAX_DATA_SIZE,
	.max_chunks_per_call = 8,
	.wakeup_bytes = 128 * 1024,
};
#endif

struct conn_key {
	__u32 tgid;
	__u32 fd;
};

#define CONN_TLS 1          /* plaintext comes from a TLS library: never emit the syscall bytes */
#define CONN_HTTP 2         /* first bytes looked like HTTP */
#define CONN_NOT_HTTP 4     /* first bytes were neither HTTP nor TLS: send nothing more */
#define CONN_PREEXISTING 8  /* first seen mid-stream: judge each call, never the whole connection */

struct conn_state {
	__u32 generation;
	__u32 flags;
	__u64 plain_pos[2]; /* per direction, bytes seen at the syscalls */
	__u64 tls_ctx;      /* the TLS session bound to this socket, if any */
	__u64 tls_bytes;    /* plaintext bytes seen for it */
	__u64 earlier_tls_ctx; /* the session it carried before (the proxy's, under TLS inside TLS) */
};

enum io_kind { IO_BUF = 0, IO_IOV = 1, IO_MSG = 2, IO_MMSG = 3 };

struct io_args {
	__u64 buf; /* buffer, iovec array, msghdr or mmsghdr array */
	__u32 fd;
	__u32 count; /* iovcnt or vlen */
	__u32 kind;
	__u32 direction;
};

struct tls_args {
	__u64 ctx;     /* SSL * or gnutls_session_t */
	__u64 buf;
	__u64 out_len; /* size_t * of the _ex calls, 0 otherwise */
	__u64 sp;      /* stack pointer at entry: a call entered deeper while this one runs is nested in it */
	__u64 entry_ns;
	__s32 fd;      /* learned from the syscall the library makes inside the call */
	__u32 source;
};

struct tls_key {
	__u32 tgid;
	__u32 pad;
	__u64 ctx;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* resized by user space */
} events SEC(".maps") SHARED_MAP;

/* LRU: connections whose process ended without close() (user space deletes them on exit, but an
 * exit event can be lost) age out instead of filling the map for good. Live connections are
 * looked up on every call and so stay recent. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized by user space */
	__type(key, struct conn_key);
	__type(value, struct conn_state);
} conns SEC(".maps") SHARED_MAP;

/* SSL * → fd, for reads served from the library's buffer without a syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_key);
	__type(value, __s32);
} tls_fds SEC(".maps") SHARED_MAP;

/* Plaintext positions per TLS session: a session is one connection's TLS stream, and keeping
 * them here lets data be sent before the session's socket is known. */
struct tls_stream {
	__u64 pos[2];
	__u32 transport; /* carries another session's records (TLS inside TLS): its plaintext is ciphertext */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_key);
	__type(value, struct tls_stream);
} tls_streams SEC(".maps") SHARED_MAP;

/* State of the chunk and iovec loops (bpf_loop callbacks) lives in the thread's storage, not on
 * the stack: the verifier then sees every iteration start from the same state and checks it once,
 * whatever the loop count (on the stack it tracked each iteration's exact offsets, and the cost
 * grew with max_chunks_per_call past its limit). Per thread rather than per CPU: a preemptible
 * kernel can run another task's probe on the same CPU in the middle of a loop. */
struct emit_ctx {
	__u64 buf;
	__u64 len;
	__u64 off;
	__u64 position;
	__u64 call_bytes;
	__u32 tgid;
	__u32 fd;
	__u32 generation;
	__u8 direction;
	__u8 source;
	__u64 tls_ctx;
};

struct iov_ctx {
	__u64 iov;
	__u64 left;
	__u64 total;
	__u32 iovcnt;
	__u32 tgid;
	__u32 fd;
	__u32 direction;
};

/* What a thread has in progress, in task-local storage: one lookup per probe, no hashing, no
 * bucket lock, freed with the thread. A thread is in one syscall at a time, and in at most one
 * TLS read and one TLS write (SSL_write may call read-like internals).
 * - io: the socket call between its enter and exit (active when io.kind_set)
 * - call_fd: the fd of a connect() or sendfile() in progress
 * - tls[DIRECTION]: the TLS call in progress, per direction
 * - pending_bind: memory-BIO applications (node, .NET) encrypt in SSL_write and send the record
 *   with a syscall after it returns, on the same thread: the session waiting for that syscall
 * - last_ingress_fd: ... and read the record with a syscall before SSL_read: the last socket read
 * - traced: the process is traced; remembered so that each call skips the selection (reading the
 *   process name and comparing it costs as much as the rest of a sys_enter probe). Cleared at
 *   exec, which can change the name and the namespaces; a rename by prctl away from a selected
 *   name is not seen (threads found untraced are remembered apart: untraced_threads). */
struct thread_state {
	struct io_args io;
	struct tls_args tls[2];
	struct emit_ctx emit;
	struct iov_ctx iov;
	__u64 pending_bind;
	__u32 call_fd;
	__u32 last_ingress_fd;
	__u8 io_active;
	__u8 call_fd_active;
	__u8 tls_active[2];
	__u8 pending_bind_active;
	__u8 last_ingress_active;
	__u8 traced; /* should_trace() said yes for this thread's process (until its next exec) */
	__u8 pad;
};

/* Threads found untraced, so that their syscalls skip the selection too (every syscall of every
 * untraced process on the node would pay the name or namespace reads). A small value of its own,
 * not a thread_state: every thread on the node that does I/O gets one. comm_head is the first 8
 * bytes of the process name when it was judged: with TRACE_COMMS a rename (prctl) is judged
 * again. Cleared at exec. */
struct untraced {
	__u64 comm_head;
};

#ifndef COLLECTOR_COMPAT
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_state);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct untraced);
} untraced_threads SEC(".maps");
#else
/* Task storage arrives in 5.11: before it, the same per-thread values in hash maps keyed by thread
 * id, made when first needed and deleted when the thread exits (sched_process_exit fires for every
 * thread) or execs. Preallocated: before 5.13 a tracing program with a run-time allocated hash map
 * warns in the kernel log (and is refused on PREEMPT_RT). The states are not LRU: a full map is
 * counted (active_calls_full), never a running call's state silently evicted; the untraced marks
 * are, since an evicted one is only judged again. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct thread_state);
} threads_compat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct untraced);
} untraced_threads_compat SEC(".maps");

/* Connection generations per CPU (an atomic fetch-and-add needs 5.12) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} generations_compat SEC(".maps");

/* The value a new thread_state starts from (zeros; a map value can be an update's source, a
 * 250-byte stack copy would crowd the 512-byte stack) */
static struct thread_state blank_thread_state;
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} trace_pids SEC(".maps") SHARED_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_event);
} scratch SEC(".maps") SHARED_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drop_counters SEC(".maps") SHARED_MAP;

#ifndef COLLECTOR_COMPAT
static __u32 next_generation = 0;
#endif

static __always_inline void count_drop(__u32 reason, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&drop_counters, &reason);
	/* atomic although per CPU: on a preemptible kernel (PREEMPT_RT, faultable syscall
	 * tracepoints) another task's probe can run on this CPU between a load and a store */
	if (v)
		__sync_fetch_and_add(v, n);
}

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

/* A fresh generation for a connection: (tgid, fd, generation) names it, so it only has to differ
 * from the earlier connections on the same fd. Never 0. */
static __always_inline __u32 new_generation(void)
{
#ifndef COLLECTOR_COMPAT
	return __sync_fetch_and_add(&next_generation, 1) + 1;
#else
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(&generations_compat, &zero);
	if (!n)
		return 1;
	*n += 1;
	/* the CPU in the low bits keeps CPUs apart (up to 1024); the count wraps after 2^22 on one CPU */
	__u32 g = (*n << 10) | (bpf_get_smp_processor_id() & 0x3ff);
	return g ? g : 1;
#endif
}

/* bpf_loop(n, fn, ctx) where the kernel has it (5.17); before it, a bounded loop that the
 * verifier walks (n is bounded by the callers' constants) */
#ifndef COLLECTOR_COMPAT
#define LOOP(n, fn, ctx) bpf_loop((n), (fn), (ctx), 0)
#else
#define LOOP(n, fn, ctx)                                                                                \
	do {                                                                                            \
		for (__u32 __i = 0; __i < (n); __i++)                                                   \
			if ((fn)(__i, (ctx)))                                                           \
				break;                                                                  \
	} while (0)
#endif

/* Wake user space in batches: only when this event makes the waiting data cross wakeup_bytes.
 * A wakeup (an irq_work and a context switch) costs far more than the copy; waking on every
 * event while a busy reader lags would multiply it. The reader also polls every 10 ms, so data
 * below the threshold waits at most that long. */
static __always_inline __u64 ringbuf_flags(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	return avail < settings.wakeup_bytes && avail + size >= settings.wakeup_bytes ? BPF_RB_FORCE_WAKEUP
										     : BPF_RB_NO_WAKEUP;
}

/* The same, for a record already reserved (it is counted in the available data). */
static __always_inline __u64 ringbuf_flags_reserved(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	return avail < settings.wakeup_bytes + size && avail >= settings.wakeup_bytes ? BPF_RB_FORCE_WAKEUP
										     : BPF_RB_NO_WAKEUP;
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

/* The TCP socket behind fd in the current task, or NULL. */
static __always_inline struct sock *tcp_sock_of_fd(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	if (fd >= max_fds)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	if (!file)
		return NULL;
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	__u16 protocol = BPF_CORE_READ(sk, sk_protocol);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6))
		return NULL;
	return sk;
}

static __always_inline void emit_open(struct conn_key *key, struct conn_state *st, struct sock *sk,
				      __u16 origin)
{
	struct open_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL, 1);
		return;
	}
	e->header.timestamp_ns = bpf_ktime_get_ns();
	e->header.type = EVENT_OPEN;
	e->header.tgid = key->tgid;
	e->header.fd = key->fd;
	e->header.generation = st->generation;
	e->origin = origin;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
	__builtin_memset(e->remote_addr, 0, sizeof(e->remote_addr));
	if (family == AF_INET) {
		bpf_core_read(e->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->remote_addr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(e->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->remote_addr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
	bpf_ringbuf_submit(e, ringbuf_flags(sizeof(*e)));
}

/* Starts tracking (tgid, fd) as a new connection with a fresh generation. */
static __always_inline struct conn_state *track_conn(struct conn_key *key, struct sock *sk, __u16 origin)
{
	struct conn_state st = {};
	st.generation = new_generation();
	if (origin == ORIGIN_UNKNOWN)
		st.flags = CONN_PREEXISTING;
	if (bpf_map_update_elem(&conns, key, &st, BPF_ANY) != 0) {
		count_drop(DROP_CONN_MAP_FULL, 1);
		return NULL;
	}
	struct conn_state *stored = bpf_map_lookup_elem(&conns, key);
	if (stored)
		emit_open(key, stored, sk, origin);
	return stored;
}

/* The tracked connection behind fd, tracking it now if it is a TCP socket first seen. */
static __always_inline struct conn_state *conn_of_fd(__u32 tgid, __u32 fd)
{
	struct conn_key key = {.tgid = tgid, .fd = fd};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (st)
		return st;
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return NULL;
	return track_conn(&key, sk, ORIGIN_UNKNOWN);
}

static __always_inline int is_token_char(__u8 c)
{
	return (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
}

/* Whether 9 bytes can be an HTTP/2 frame header: a known type with only its flags, no reserved
 * bit, a length within max_len, and the stream rules of its type (RFC 9113 §6). */
static __always_inline int is_h2_frame_header(const __u8 *h, __u32 max_len)
{
	__u32 len = ((__u32)h[0] << 16) | ((__u32)h[1] << 8) | h[2];
	__u8 type = h[3], flags = h[4];
	int stream0 = (h[5] & 0x7f) == 0 && h[6] == 0 && h[7] == 0 && h[8] == 0;
	if (len > max_len || (h[5] & 0x80))
		return 0;
	switch (type) {
	case 0: /* DATA */
		return !stream0 && !(flags & ~0x09);
	case 1: /* HEADERS */
		return !stream0 && !(flags & ~0x2d);
	case 2: /* PRIORITY */
		return !stream0 && flags == 0 && len == 5;
	case 3: /* RST_STREAM */
		return !stream0 && flags == 0 && len == 4;
	case 4: /* SETTINGS */
		return stream0 && !(flags & ~0x01) && len % 6 == 0 && (!(flags & 1) || len == 0);
	case 5: /* PUSH_PROMISE */
		return !stream0 && !(flags & ~0x0c);
	case 6: /* PING */
		return stream0 && !(flags & ~0x01) && len == 8;
	case 7: /* GOAWAY */
		return stream0 && flags == 0 && len >= 8;
	case 8: /* WINDOW_UPDATE */
		return flags == 0 && len == 4;
	case 9: /* CONTINUATION */
		return !stream0 && !(flags & ~0x04);
	}
	return 0;
}

/* Decides from a connection's first bytes whether it carries HTTP.
 * Returns 1 when it may be HTTP (a method token or "HTTP/"; the HTTP/2 preface begins "PRI "; a
 * server that writes first sends a SETTINGS frame; a connection first seen mid-stream may be in
 * the middle of HTTP/2, whose writes begin with a frame), 0 when it cannot be, and leaves the
 * decision open (-1) when too few bytes were seen. TLS records are marked as such, not counted. */
static __always_inline int judge_first_bytes(struct conn_state *st, const void *buf, __u64 len)
{
	if (st->flags & (CONN_HTTP | CONN_NOT_HTTP))
		return (st->flags & CONN_HTTP) ? 1 : 0;
	__u8 head[9] = {};
	if (len < 4)
		return -1;
	if (bpf_probe_read_user(head, len >= 9 ? 9 : 4, buf) != 0)
		return -1;
	if (head[0] == 0x16 && head[1] == 0x03) {
		/* A TLS handshake: its plaintext, if any, comes from the library probes. */
		st->flags |= CONN_NOT_HTTP | CONN_TLS;
		return 0;
	}
	if (head[0] >= 'A' && head[0] <= 'Z' && is_token_char(head[1]) &&
	    (is_token_char(head[2]) || head[2] == ' ') &&
	    (is_token_char(head[3]) || head[3] == ' ' || head[3] == '/')) {
		st->flags |= CONN_HTTP;
		return 1;
	}
	if (len >= 9) {
		/* HTTP/2 without its preface: a server's SETTINGS, or any frame mid-stream */
		int preexisting = st->flags & CONN_PREEXISTING;
		/* (a second frame header in the same call is not checked: the verifier's walk of
		 * recvmmsg, which judges every buffer, passes its limit; user space gives a joined
		 * connection back to HTTP/1 when its frames do not hold) */
		if ((head[3] == 4 || preexisting) &&
		    is_h2_frame_header(head, preexisting ? (1u << 20) : 16384)) {
			st->flags |= CONN_HTTP;
			return 1;
		}
	}
	/* A connection first seen mid-stream may be in the middle of a body: skip this call, and
	 * judge again at the next one, which may start a message. */
	if (st->flags & CONN_PREEXISTING)
		return 0;
	st->flags |= CONN_NOT_HTTP;
	return 0;
}

/* Up to MAX_SEGMENTS user buffers that follow each other in the stream. */
struct segments {
	__u64 base[MAX_SEGMENTS];
	__u64 len[MAX_SEGMENTS];
};

/* The fixed part of a data event of n bytes at offset c->off of the call. */
static __always_inline void fill_data_header(struct data_event *e, const struct emit_ctx *c, __u64 n)
{
	e->header.timestamp_ns = bpf_ktime_get_ns();
	e->header.type = EVENT_DATA;
	e->header.tgid = c->tgid;
	e->header.fd = c->fd;
	e->header.generation = c->generation;
	e->position = c->position + c->off;
	e->call_bytes = c->call_bytes;
	e->data_len = n;
	e->direction = c->direction;
	e->source = c->source;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	e->tls_ctx = c->tls_ctx;
}

/* Copies len (at most MAX_DATA_SIZE) bytes of user memory into a ring-buffer record at off, without
 * the kfunc: bpf_dynptr_data hands out a constant-sized window, so the copy goes in the
 * power-of-two pieces that make up len. No scratch: on a preemptible kernel a per-CPU buffer can
 * be taken over by another task's probe in the middle of a copy. */
static __always_inline long copy_user_pieces(struct bpf_dynptr *dp, __u64 off, __u64 len, __u64 src)
{
#pragma unroll
	for (int bit = 14; bit >= 0; bit--) {
		const __u32 piece = 1u << bit;
		if (len & piece) {
			void *p = bpf_dynptr_data(dp, off, piece);
			if (!p)
				return -1;
			if (bpf_probe_read_user(p, piece, (const void *)src) != 0)
				return -1;
			off += piece;
			src += piece;
		}
	}
	return 0;
}

/* One data event of n bytes from the segments, reserved at its size in the ring buffer and filled
 * there (needs copies_into_ring()). */
static __always_inline void emit_direct(const struct emit_ctx *c, const struct segments *segs, __u64 n)
{
	struct bpf_dynptr dp;
	__u64 size = DATA_HEADER_SIZE + n;
	if (bpf_ringbuf_reserve_dynptr(&events, size, 0, &dp) != 0) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		count_drop(DROP_RINGBUF_FULL, 1);
		count_drop(DROP_RINGBUF_FULL_BYTES, n);
		return;
	}
	struct data_event *e = bpf_dynptr_data(&dp, 0, DATA_HEADER_SIZE);
	if (!e) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		return;
	}
	fill_data_header(e, c, n);
	__u64 off = DATA_HEADER_SIZE;
#pragma unroll
	for (int i = 0; i < MAX_SEGMENTS; i++) {
		__u64 len = segs->len[i];
		if (len == 0)
			continue;
		long err = has_direct_copy()
				   ? bpf_probe_read_user_dynptr(&dp, off, len, (const void *)segs->base[i])
				   : copy_user_pieces(&dp, off, len & (2 * MAX_DATA_SIZE - 1), segs->base[i]);
		if (err != 0) {
			bpf_ringbuf_discard_dynptr(&dp, 0);
			count_drop(DROP_READ_FAILED_BYTES, n);
			return;
		}
		off += len;
	}
	bpf_ringbuf_submit_dynptr(&dp, ringbuf_flags_reserved(size));
}

static __always_inline __u32 chunk_limit(void)
{
	__u32 limit = settings.chunk_size;
	return limit > MAX_DATA_SIZE ? MAX_DATA_SIZE : limit;
}

/* One chunk of emit_buffer; a bpf_loop callback so that the verifier walks it once. */
static long emit_chunk(__u32 index, void *unused)
{
	struct thread_state *t = thread_state(0);
	if (!t)
		return 1;
	struct emit_ctx *c = &t->emit;
	if (c->off >= c->len)
		return 1;
	__u64 n = c->len - c->off;
	__u32 limit = chunk_limit();
	if (n > limit)
		n = limit;
	if (copies_into_ring()) {
		struct segments one = {.base = {c->buf + c->off}, .len = {n}};
		emit_direct(c, &one, n);
		c->off += n;
		return 0;
	}
	__u32 zero = 0;
	struct data_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 1;
	long err;
	if (n >= MAX_DATA_SIZE) {
		n = MAX_DATA_SIZE;
		err = bpf_probe_read_user(e->data, MAX_DATA_SIZE, (const void *)(c->buf + c->off));
	} else {
		n &= MAX_DATA_SIZE - 1;
		err = bpf_probe_read_user(e->data, n, (const void *)(c->buf + c->off));
	}
	if (err != 0) {
		count_drop(DROP_READ_FAILED_BYTES, n);
		c->off += n;
		return 0;
	}
	fill_data_header(e, c, n);
	__u64 size = offsetof(struct data_event, data) + n;
	if (size > sizeof(*e))
		size = sizeof(*e);
	if (bpf_ringbuf_output(&events, e, size, ringbuf_flags(size)) != 0) {
		count_drop(DROP_RINGBUF_FULL, 1);
		count_drop(DROP_RINGBUF_FULL_BYTES, n);
	}
	c->off += n;
	return 0;
}

/* Sends [buf, buf+len) as data events of at most chunk_size bytes, at most max_chunks_per_call
 * of them; the rest of the call is a gap that user space sees from the positions. */
static __always_inline void emit_buffer(__u32 tgid, __u32 fd, __u32 generation, __u64 position,
					__u64 buf, __u64 len, __u64 call_bytes, __u8 direction,
					__u8 source, __u64 tls_ctx)
{
	if (len == 0)
		return; /* an empty iovec entry: nothing to send */
	struct thread_state *t = thread_state(0);
	if (!t)
		return;
	struct emit_ctx *c = &t->emit;
	c->buf = buf;
	c->len = len;
	c->off = 0;
	c->position = position;
	c->call_bytes = call_bytes;
	c->tgid = tgid;
	c->fd = fd;
	c->generation = generation;
	c->direction = direction;
	c->source = source;
	c->tls_ctx = tls_ctx;
	if (copies_into_ring() && len <= chunk_limit() && settings.max_chunks_per_call > 0) {
		/* the common case, one chunk: no loop */
		struct segments one = {.base = {buf}, .len = {len}};
		emit_direct(c, &one, len);
		return;
	}
	__u32 chunks = settings.max_chunks_per_call;
	if (chunks > MAX_CHUNKS_LIMIT)
		chunks = MAX_CHUNKS_LIMIT;
	LOOP(chunks, emit_chunk, NULL);
	if (c->off < len)
		count_drop(DROP_BEYOND_CAPTURE_BYTES, len - c->off);
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

/* ---- plaintext at the syscalls ---- */

static __always_inline void enter_io(__u32 fd, __u64 buf, __u32 count, __u32 kind, __u32 direction)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct thread_state *t;
	if (!thread_traced(tgid, &t))
		return;
	if (!conn_of_fd(tgid, fd))
		return;
	t = traced_thread_state(t);
	if (!t)
		return;
	t->io.buf = buf;
	t->io.fd = fd;
	t->io.count = count;
	t->io.kind = kind;
	t->io.direction = direction;
	t->io_active = 1;
}

/* A TLS session is over (freed, or its socket closed): its address may name the next one. */
static __always_inline void forget_tls_session(__u32 tgid, __u64 ctx)
{
	struct tls_key k = {.tgid = tgid, .ctx = ctx};
	bpf_map_delete_elem(&tls_fds, &k);
	bpf_map_delete_elem(&tls_streams, &k);
}

/* Ties a TLS session to its socket; tells user space when the tie is new, so that plaintext sent
 * before it was known finds its connection. */
static __always_inline void bind_tls(__u32 tgid, __u64 ctx, __u32 fd, struct conn_state *st)
{
	struct tls_key k = {.tgid = tgid, .ctx = ctx};
	__s32 v = fd;
	__s32 *known = bpf_map_lookup_elem(&tls_fds, &k);
	st->flags |= CONN_TLS;
	if (st->tls_ctx != 0 && st->tls_ctx != ctx)
		st->earlier_tls_ctx = st->tls_ctx;
	st->tls_ctx = ctx;
	if (known && *known == v)
		return;
	if (known) {
		/* The address names a session on another socket now: the earlier one was freed without
		 * our seeing it (GnuTLS has no probe on its free). Its positions and marks are not this
		 * session's. */
		bpf_map_delete_elem(&tls_streams, &k);
	}
	bpf_map_update_elem(&tls_fds, &k, &v, BPF_ANY);
	struct bind_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL, 1);
		return;
	}
	e->header.timestamp_ns = bpf_ktime_get_ns();
	e->header.type = EVENT_BIND;
	e->header.tgid = tgid;
	e->header.fd = fd;
	e->header.generation = st->generation;
	e->tls_ctx = ctx;
	bpf_ringbuf_submit(e, ringbuf_flags(sizeof(*e)));
}

/* A TLS call is active on this thread: the syscall names its socket. Returns 1 when so. */
static __always_inline int claim_for_tls(struct thread_state *t, __u32 tgid, struct conn_state *st, __u32 fd)
{
	struct tls_args *a;
	if (t->tls_active[DIRECTION_INGRESS])
		a = &t->tls[DIRECTION_INGRESS];
	else if (t->tls_active[DIRECTION_EGRESS])
		a = &t->tls[DIRECTION_EGRESS];
	else
		return 0;
	a->fd = fd;
	bind_tls(tgid, a->ctx, fd, st);
	return 1;
}

/* Takes len plaintext bytes of a syscall into the connection's position; head is where the first
 * of them are (len ≥ head_len). Returns the position of the first byte when they are to be sent,
 * -1 when not: the connection carries TLS, plaintext capture is off, or its first bytes are not
 * HTTP (counted). */
static __always_inline __s64 plain_take(struct conn_state *st, __u64 head, __u64 head_len, __u64 len,
					__u32 direction)
{
	__u64 pos = st->plain_pos[direction & 1];
	st->plain_pos[direction & 1] = pos + len;
	if ((st->flags & CONN_TLS) || !settings.capture_plain)
		return -1;
	if (judge_first_bytes(st, (const void *)head, head_len) == 0) {
		if (!(st->flags & CONN_TLS))
			count_drop(DROP_NOT_HTTP_BYTES, len);
		return -1;
	}
	return pos;
}

/* Emits the plaintext of one buffer of a syscall, or counts it when the connection is not HTTP. */
static __always_inline void plain_buffer(__u32 tgid, __u32 fd, struct conn_state *st, __u64 buf,
					 __u64 len, __u64 call_bytes, __u32 direction)
{
	__s64 pos = plain_take(st, buf, len, len, direction);
	if (pos >= 0)
		emit_buffer(tgid, fd, st->generation, pos, buf, len, call_bytes, direction, SOURCE_SYSCALL, 0);
}

struct iovec_user {
	__u64 base;
	__u64 len;
};

static long iov_entry(__u32 i, void *unused)
{
	struct thread_state *t = thread_state(0);
	if (!t)
		return 1;
	struct iov_ctx *c = &t->iov;
	if (i >= c->iovcnt || c->left == 0)
		return 1;
	struct iovec_user v = {};
	if (bpf_probe_read_user(&v, sizeof(v), (const void *)(c->iov + i * sizeof(v))) != 0)
		return 1;
	struct conn_key key = {.tgid = c->tgid, .fd = c->fd};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return 1;
	__u64 n = v.len < c->left ? v.len : c->left;
	__u64 total = c->total;
	__u32 direction = c->direction;
	c->left -= n;
	plain_buffer(key.tgid, key.fd, st, v.base, n, total, direction);
	return 0;
}

/* A vector call of at most MAX_SEGMENTS buffers that fits one chunk (nginx's writev of header and
 * body): one data event for the whole call. Returns 0 when the call is not of that shape. */
static __always_inline int plain_iov_coalesced(__u32 tgid, __u32 fd, struct conn_state *st, __u64 iov,
					       __u32 iovcnt, __u64 total, __u32 direction)
{
	struct segments segs = {};
	__u64 left = total, first = 0, first_len = 0;
	for (int i = 0; i < MAX_SEGMENTS; i++) {
		if (i >= iovcnt)
			break;
		struct iovec_user v = {};
		if (bpf_probe_read_user(&v, sizeof(v), (const void *)(iov + i * sizeof(v))) != 0)
			return 0;
		__u64 n = v.len < left ? v.len : left;
		segs.base[i] = v.base;
		segs.len[i] = n;
		left -= n;
		if (first_len == 0 && n > 0) {
			first = v.base;
			first_len = n;
		}
	}
	if (left != 0)
		return 0;
	__s64 pos = plain_take(st, first, first_len, total, direction);
	if (pos < 0)
		return 1;
	struct emit_ctx c = {.position = pos, .call_bytes = total, .tgid = tgid, .fd = fd,
			     .generation = st->generation, .direction = direction, .source = SOURCE_SYSCALL};
	emit_direct(&c, &segs, total);
	return 1;
}

static __always_inline void plain_iov(__u32 tgid, __u32 fd, struct conn_state *st, __u64 iov,
				      __u32 iovcnt, __u64 total, __u32 direction)
{
	if (copies_into_ring() && iovcnt <= MAX_SEGMENTS && total <= chunk_limit() &&
	    settings.max_chunks_per_call > 0 &&
	    plain_iov_coalesced(tgid, fd, st, iov, iovcnt, total, direction))
		return;
	struct thread_state *t = thread_state(0);
	if (!t)
		return;
	struct iov_ctx *c = &t->iov;
	c->iov = iov;
	c->left = total;
	c->total = total;
	c->iovcnt = iovcnt;
	c->tgid = tgid;
	c->fd = fd;
	c->direction = direction;
	LOOP(MAX_IOV_WALK, iov_entry, NULL);
	if (c->left > 0) {
		/* iovecs past the walk limit: keep positions exact so user space sees the gap */
		count_drop(DROP_IOV_SKIPPED, c->left);
		st->plain_pos[direction & 1] += c->left;
	}
}

/* The byte count of messages [from, to) of a sendmmsg/recvmmsg vector, summed by a bpf_loop. */
struct mmsg_rest {
	__u64 mmsg;
	__u64 bytes;
	__u32 from;
	__u32 to;
};

static long mmsg_rest_len(__u32 i, struct mmsg_rest *r)
{
	__u32 m = r->from + i;
	if (m >= r->to)
		return 1;
	__u32 len = 0;
	bpf_probe_read_user(&len, sizeof(len),
			    (const void *)(r->mmsg + m * sizeof(struct mmsghdr) + offsetof(struct mmsghdr, msg_len)));
	r->bytes += len;
	return 0;
}

static __always_inline void exit_io(long ret, const int kind)
{
	struct thread_state *t = thread_state(0);
	if (!t || !t->io_active)
		return;
	struct io_args a = t->io;
	t->io_active = 0;
	if (ret <= 0)
		return;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct conn_key key = {.tgid = tgid, .fd = a.fd};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return;
	if (claim_for_tls(t, tgid, st, a.fd))
		return;
	/* Memory-BIO bookkeeping only for connections that carry TLS records: plaintext connections
	 * (the hot path) pay nothing for it. */
	if (st->flags & CONN_TLS) {
		if (a.direction == DIRECTION_EGRESS) {
			/* a guess: never move a socket already tied to another session */
			if (t->pending_bind_active && (st->tls_ctx == 0 || st->tls_ctx == t->pending_bind)) {
				bind_tls(tgid, t->pending_bind, a.fd, st);
				t->pending_bind_active = 0;
			}
		} else {
			t->last_ingress_fd = a.fd;
			t->last_ingress_active = 1;
		}
	}
	if (kind == IO_BUF) {
		plain_buffer(tgid, a.fd, st, a.buf, ret, ret, a.direction);
	} else if (kind == IO_IOV) {
		plain_iov(tgid, a.fd, st, a.buf, a.count, ret, a.direction);
	} else if (kind == IO_MSG) {
		__u64 iov = 0, iovlen = 0;
		struct user_msghdr *msg = (struct user_msghdr *)a.buf;
		bpf_probe_read_user(&iov, sizeof(iov), &msg->msg_iov);
		bpf_probe_read_user(&iovlen, sizeof(iovlen), &msg->msg_iovlen);
		plain_iov(tgid, a.fd, st, iov, iovlen, ret, a.direction);
	} else {
		/* sendmmsg/recvmmsg: ret is the number of messages; each carries its own length */
		for (int m = 0; m < MAX_MMSG_WALK; m++) {
			if (m >= ret || m >= a.count)
				break;
			struct mmsghdr *mm = (struct mmsghdr *)(a.buf + m * sizeof(struct mmsghdr));
			__u64 iov = 0, iovlen = 0;
			__u32 msg_len = 0;
			bpf_probe_read_user(&iov, sizeof(iov), &mm->msg_hdr.msg_iov);
			bpf_probe_read_user(&iovlen, sizeof(iovlen), &mm->msg_hdr.msg_iovlen);
			bpf_probe_read_user(&msg_len, sizeof(msg_len), &mm->msg_len);
			plain_iov(tgid, a.fd, st, iov, iovlen, msg_len, a.direction);
		}
		if (ret > MAX_MMSG_WALK) {
			/* messages past the walk: their bytes advance the position (an exact gap for
			 * user space) and are counted */
			struct mmsg_rest rest = {.mmsg = a.buf, .from = MAX_MMSG_WALK,
						 .to = ret < a.count ? ret : a.count};
			LOOP(MAX_MMSG_VLEN, mmsg_rest_len, &rest);
			st->plain_pos[a.direction & 1] += rest.bytes;
			if (!(st->flags & (CONN_TLS | CONN_NOT_HTTP)))
				count_drop(DROP_IOV_SKIPPED, rest.bytes);
		}
	}
}

SEC("tracepoint/syscalls/sys_enter_read")
int PROG(sys_enter_read)(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int PROG(sys_exit_read)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_BUF);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int PROG(sys_enter_write)(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_write")
int PROG(sys_exit_write)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_BUF);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int PROG(sys_enter_recvfrom)(struct trace_event_raw_sys_enter *ctx)
{
	/* a peek reads the same bytes again later: not part of the stream */
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int PROG(sys_exit_recvfrom)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_BUF);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int PROG(sys_enter_sendto)(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int PROG(sys_exit_sendto)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_BUF);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_readv")
int PROG(sys_enter_readv)(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_IOV, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_readv")
int PROG(sys_exit_readv)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_IOV);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int PROG(sys_enter_writev)(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_IOV, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_writev")
int PROG(sys_exit_writev)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_IOV);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int PROG(sys_enter_recvmsg)(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[2] & MSG_PEEK)
		return 0;
	enter_io(ctx->args[0], ctx->args[1], 0, IO_MSG, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int PROG(sys_exit_recvmsg)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_MSG);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int PROG(sys_enter_sendmsg)(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], 0, IO_MSG, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int PROG(sys_exit_sendmsg)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_MSG);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int PROG(sys_enter_recvmmsg)(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_MMSG, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int PROG(sys_exit_recvmmsg)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_MMSG);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int PROG(sys_enter_sendmmsg)(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_MMSG, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int PROG(sys_exit_sendmmsg)(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_MMSG);
	return 0;
}

/* sendfile: the bytes never pass through user memory. Advance the position so that user space
 * sees an exact gap, and count the bytes. */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int PROG(sys_enter_sendfile64)(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!process_traced(tgid))
		return 0;
	__u32 fd = ctx->args[0];
	struct conn_key key = {.tgid = tgid, .fd = fd};
	if (!bpf_map_lookup_elem(&conns, &key))
		return 0;
	struct thread_state *t = thread_state(1);
	if (!t)
		return 0;
	t->call_fd = fd;
	t->call_fd_active = 1;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int PROG(sys_exit_sendfile64)(struct trace_event_raw_sys_exit *ctx)
{
	struct thread_state *t = thread_state(0);
	if (!t || !t->call_fd_active)
		return 0;
	t->call_fd_active = 0;
	struct conn_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .fd = t->call_fd};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st || ctx->ret <= 0)
		return 0;
	st->plain_pos[DIRECTION_EGRESS] += ctx->ret;
	if (!(st->flags & (CONN_TLS | CONN_NOT_HTTP)))
		count_drop(DROP_SENDFILE_BYTES, ctx->ret);
	return 0;
}

/* ---- connection life cycle ---- */

static __always_inline void accepted(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (ret < 0 || !process_traced(tgid))
		return;
	struct sock *sk = tcp_sock_of_fd(ret);
	if (!sk)
		return;
	struct conn_key key = {.tgid = tgid, .fd = ret};
	track_conn(&key, sk, ORIGIN_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int PROG(sys_exit_accept4)(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int PROG(sys_exit_accept)(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int PROG(sys_enter_connect)(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!process_traced(id >> 32))
		return 0;
	struct thread_state *t = thread_state(1);
	if (!t)
		return 0;
	t->call_fd = ctx->args[0];
	t->call_fd_active = 1;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int PROG(sys_exit_connect)(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct thread_state *t = thread_state(0);
	if (!t || !t->call_fd_active)
		return 0;
	__u32 fd = t->call_fd;
	t->call_fd_active = 0;
	if (ctx->ret != 0 && ctx->ret != -EINPROGRESS)
		return 0;
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return 0;
	struct conn_key key = {.tgid = id >> 32, .fd = fd};
	track_conn(&key, sk, ORIGIN_CONNECT);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int PROG(sys_enter_close)(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key = {.tgid = id >> 32, .fd = ctx->args[0]};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return 0;
	struct close_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		e->header.timestamp_ns = bpf_ktime_get_ns();
		e->header.type = EVENT_CLOSE;
		e->header.tgid = key.tgid;
		e->header.fd = key.fd;
		e->header.generation = st->generation;
		e->egress_bytes = st->plain_pos[DIRECTION_EGRESS];
		e->ingress_bytes = st->plain_pos[DIRECTION_INGRESS];
		e->flags = ((st->flags & CONN_TLS) ? CLOSE_TLS : 0) | (st->tls_bytes ? CLOSE_TLS_PLAINTEXT : 0);
		e->pad = 0;
		bpf_ringbuf_submit(e, ringbuf_flags(sizeof(*e)));
	} else {
		count_drop(DROP_RINGBUF_FULL, 1);
	}
	if (st->tls_ctx)
		forget_tls_session(key.tgid, st->tls_ctx);
	if (st->earlier_tls_ctx)
		forget_tls_session(key.tgid, st->earlier_tls_ctx);
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

/* ---- processes ---- */

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

/* ---- TLS plaintext at the library ---- */

/* The positions of a TLS session, made when first needed. */
static __always_inline struct tls_stream *tls_stream_of(struct tls_key *k)
{
	struct tls_stream *ts = bpf_map_lookup_elem(&tls_streams, k);
	if (ts)
		return ts;
	struct tls_stream fresh = {};
	bpf_map_update_elem(&tls_streams, k, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&tls_streams, k);
}

static __always_inline void tls_enter(const __u32 direction, void *ctx_ptr, const void *buf, void *out_len, __u32 source,
				      __u64 sp)
{
	if (!settings.capture_tls)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	struct thread_state *t;
	if (!thread_traced(id >> 32, &t))
		return;
	t = traced_thread_state(t);
	if (!t)
		return;
	struct tls_args *a = &t->tls[direction & 1];
	__u64 now = bpf_ktime_get_ns();
	if (t->tls_active[direction & 1]) {
		if (a->ctx != (__u64)ctx_ptr && sp < a->sp && a->sp - sp < TLS_NEST_MAX_STACK &&
		    now - a->entry_ns < TLS_NEST_MAX_NS) {
			/* A call of another session made inside this one (TLS inside TLS: curl through an
			 * HTTPS proxy, where the proxy's session carries the origin's records). The call
			 * already running has the application's plaintext; this one's is the other's
			 * records: mark its session a transport, whose plaintext is not sent, and keep the
			 * running call. Bounded in stack distance and time, so that a slot whose return was
			 * never seen (a longjmp out of the library) is not taken for a running call. */
			struct tls_key k = {.tgid = id >> 32, .ctx = (__u64)ctx_ptr};
			struct tls_stream *ts = tls_stream_of(&k);
			if (ts)
				ts->transport = 1;
			return;
		}
		/* the running call's plaintext is lost (or its return was never seen): say so */
		count_drop(DROP_TLS_CALLS_OVERLAPPED, 1);
	}
	a->sp = sp;
	a->entry_ns = now;
	a->ctx = (__u64)ctx_ptr;
	a->buf = (__u64)buf;
	a->out_len = (__u64)out_len;
	a->fd = -1;
	a->source = source;
	t->tls_active[direction & 1] = 1;
	/* a record still waiting for its socket write belongs to an earlier call: stop guessing */
	t->pending_bind_active = 0;
}

static __always_inline void tls_exit(const __u32 direction, long ret, __u64 sp)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct thread_state *t = thread_state(0);
	if (!t || !t->tls_active[direction & 1])
		return;
	if (sp < t->tls[direction & 1].sp)
		return; /* a nested call returns (see tls_enter); the call it was made in still runs */
	struct tls_args a = t->tls[direction & 1];
	t->tls_active[direction & 1] = 0;
	if (ret <= 0)
		return;
	__u64 bytes = ret;
	if (a.out_len) {
		/* SSL_read_ex/SSL_write_ex return 1 and put the byte count in *out_len */
		bytes = 0;
		if (bpf_probe_read_user(&bytes, sizeof(bytes), (const void *)a.out_len) != 0)
			return;
	}
	if (bytes == 0)
		return;
	__u32 tgid = id >> 32;
	struct tls_key k = {.tgid = tgid, .ctx = a.ctx};
	__s32 fd = a.fd; /* a syscall inside the call named the socket */
	if (fd < 0) {
		__s32 *known = bpf_map_lookup_elem(&tls_fds, &k);
		if (known)
			fd = *known;
	}
	int guessed = 0;
	if (fd < 0 && direction == DIRECTION_INGRESS) {
		/* memory BIO: the record came in with this thread's last socket read */
		if (t->last_ingress_active) {
			fd = t->last_ingress_fd;
			guessed = 1;
		}
	}
	struct conn_state *st = NULL;
	if (fd >= 0) {
		st = conn_of_fd(tgid, fd);
		/* a guess never moves a socket already tied to another session */
		if (st && guessed && st->tls_ctx != 0 && st->tls_ctx != a.ctx)
			st = NULL;
		if (st)
			bind_tls(tgid, a.ctx, fd, st);
	}
	struct tls_stream *ts = tls_stream_of(&k);
	if (!ts)
		return;
	__u64 pos = ts->pos[direction & 1];
	ts->pos[direction & 1] = pos + bytes;
	if (ts->transport)
		return; /* another session's records: its own calls send the plaintext */
	if (st) {
		st->tls_bytes += bytes;
		emit_buffer(tgid, fd, st->generation, pos, a.buf, bytes, bytes, direction, a.source, a.ctx);
		return;
	}
	/* Socket not known yet: send the plaintext now, user space holds it until the bind event.
	 * A write's record leaves with this thread's next socket write. */
	if (direction == DIRECTION_EGRESS) {
		t->pending_bind = a.ctx;
		t->pending_bind_active = 1;
	}
	emit_buffer(tgid, UNBOUND_FD, 0, pos, a.buf, bytes, bytes, direction, a.source, a.ctx);
}

SEC("uprobe")
int PROG_KPROBE(PROG(ssl_write_enter), void *ssl, const void *buf, int num)
{
	tls_enter(DIRECTION_EGRESS, ssl, buf, NULL, SOURCE_OPENSSL, PT_REGS_SP(ctx));
	return 0;
}

SEC("uretprobe")
int PROG_KRETPROBE(PROG(ssl_write_exit), int ret)
{
	tls_exit(DIRECTION_EGRESS, ret, PT_REGS_SP(ctx));
	return 0;
}

SEC("uprobe")
int PROG_KPROBE(PROG(ssl_read_enter), void *ssl, void *buf, int num)
{
	tls_enter(DIRECTION_INGRESS, ssl, buf, NULL, SOURCE_OPENSSL, PT_REGS_SP(ctx));
	return 0;
}

SEC("uretprobe")
int PROG_KRETPROBE(PROG(ssl_read_exit), int ret)
{
	tls_exit(DIRECTION_INGRESS, ret, PT_REGS_SP(ctx));
	return 0;
}

SEC("uprobe")
int PROG_KPROBE(PROG(ssl_write_ex_enter), void *ssl, const void *buf, __u64 num, __u64 *written)
{
	tls_enter(DIRECTION_EGRESS, ssl, buf, written, SOURCE_OPENSSL, PT_REGS_SP(ctx));
	return 0;
}

SEC("uprobe")
int PROG_KPROBE(PROG(ssl_read_ex_enter), void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	tls_enter(DIRECTION_INGRESS, ssl, buf, readbytes, SOURCE_OPENSSL, PT_REGS_SP(ctx));
	return 0;
}

/* SSL_set_fd / SSL_set_rfd / SSL_set_wfd(SSL *ssl, int fd) */
SEC("uprobe")
int PROG_KPROBE(PROG(ssl_set_fd_enter), void *ssl, int fd)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!settings.capture_tls || !process_traced(id >> 32) || fd < 0)
		return 0;
	struct conn_state *st = conn_of_fd(id >> 32, fd);
	if (st)
		bind_tls(id >> 32, (__u64)ssl, fd, st);
	return 0;
}

/* SSL_free(SSL *ssl): the session's address may be reused by the next one: forget it. */
SEC("uprobe")
int PROG_KPROBE(PROG(ssl_free_enter), void *ssl)
{
	forget_tls_session(bpf_get_current_pid_tgid() >> 32, (__u64)ssl);
	return 0;
}

/* gnutls_record_send(session, data, size) / gnutls_record_recv(session, data, size) */
SEC("uprobe")
int PROG_KPROBE(PROG(gnutls_send_enter), void *session, const void *buf, __u64 size)
{
	tls_enter(DIRECTION_EGRESS, session, buf, NULL, SOURCE_GNUTLS, PT_REGS_SP(ctx));
	return 0;
}

SEC("uretprobe")
int PROG_KRETPROBE(PROG(gnutls_send_exit), long ret)
{
	tls_exit(DIRECTION_EGRESS, ret, PT_REGS_SP(ctx));
	return 0;
}

SEC("uprobe")
int PROG_KPROBE(PROG(gnutls_recv_enter), void *session, void *buf, __u64 size)
{
	tls_enter(DIRECTION_INGRESS, session, buf, NULL, SOURCE_GNUTLS, PT_REGS_SP(ctx));
	return 0;
}

SEC("uretprobe")
int PROG_KRETPROBE(PROG(gnutls_recv_exit), long ret)
{
	tls_exit(DIRECTION_INGRESS, ret, PT_REGS_SP(ctx));
	return 0;
}
