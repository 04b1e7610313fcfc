/* The maps that more than one part of the object uses, and the values they hold: the ring buffer,
 * the drop counters, connections, TLS sessions and per-thread state (with its compat form). */
#ifndef COLLECTOR_MAPS_H
#define COLLECTOR_MAPS_H

#include "common.h"

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

/* Who makes a TLS call, from its entry to its return. A C library's call runs on one thread
 * throughout: the thread is the caller. Go's crypto/tls is called by goroutines, which park inside
 * a Read and resume on another thread, and whose stacks move: there the goroutine is the caller. */
enum tls_caller {
	TLS_CALLER_THREAD = 0,    /* id: the thread id */
	TLS_CALLER_GOROUTINE = 1, /* id: the goroutine (its g pointer, R14 under Go's register ABI) */
};

struct tls_call_key {
	__u32 tgid;
	__u16 caller;    /* enum tls_caller */
	__u16 direction; /* a caller can be in a read and a write at once (SSL_write may read) */
	__u64 id;
};

/* A TLS call between its entry and its return. */
struct tls_call {
	__u64 ctx;     /* the session: SSL *, gnutls_session_t (Go: the *tls.Conn) */
	__u64 buf;
	__u64 out_len; /* size_t * of the _ex calls, 0 otherwise (Go: the bytes of a write not sent yet) */
	__u64 sp;      /* stack pointer at entry: a call entered deeper while this one runs is nested in it
			* (Go: how many calls are nested in it; a goroutine's stack moves) */
	__u64 entry_ns;
	__s32 fd;      /* the socket, -1 until known: from the call's arguments (a source that can read
			* it there), or at return from the syscall the library made inside the call
			* (a thread caller's: kept in thread_state.tls_fd) */
	__u32 source;  /* enum event_source */
};

/* Every TLS call in progress, whatever its source, under its caller's key. LRU: a call whose
 * return is never seen (a longjmp out of the library, a goroutine that dies in it) ages out
 * instead of holding its slot for good; a call evicted while it runs is counted
 * (active_calls_full). Thread callers need two entries per thread at most; goroutine callers
 * need one per connection (a Go server's idle keep-alive connections each hold a goroutine in Read):
 * user space sizes it like the connection map (CONN_MAP_ENTRIES), 16384 at least. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tls_call_key);
	__type(value, struct tls_call);
} tls_calls SEC(".maps") SHARED_MAP;

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

#define MAX_SEGMENTS 4 /* buffers of one call coalesced into one data event */

/* Up to MAX_SEGMENTS user buffers that follow each other in the stream; start is each one's offset
 * in the event's data (given, not summed while copying: a running offset differs between a segment
 * copied and one skipped, and the verifier would walk every combination). */
struct segments {
	__u64 base[MAX_SEGMENTS];
	__u64 len[MAX_SEGMENTS];
	__u64 start[MAX_SEGMENTS];
};

/* A vector call's buffers gathered for one data event (sockets.c, plain_iov_coalesced), and its
 * first bytes (head) that judge whether the connection is HTTP. In the thread's storage, not on
 * the stack, for the verifier's sake as the loop state above: values it reads back from a map are
 * just numbers, so the paths of the gathering loop (one per buffer count) meet before the HTTP
 * judgement, which it then walks once instead of once per path (the writev program took 110k
 * instructions and 0.3 s to verify, the mmsg ones 0.9 s: most of the object's 3 s load). */
struct iov_gather {
	struct segments segs;
	__u64 head;
	__u64 head_len;
};

/* What a thread has in progress, in task-local storage: one lookup per probe, no hashing, no
 * bucket lock, freed with the thread. A thread is in one syscall at a time, and in at most one
 * TLS read and one TLS write (SSL_write may call read-like internals).
 * - io: the socket call between its enter and exit (active when io.kind_set)
 * - call_fd: the fd of a connect() or sendfile() in progress
 * - tls_active[DIRECTION]: this thread has a TLS call in progress in tls_calls, per direction (an
 *   entry left there by an earlier thread with the same id is not taken for a running call: these
 *   bits go with the thread); tls_ctx is its session and tls_fd the socket a syscall inside it
 *   named, kept here so that the syscall path ties them without a hash lookup
 * - pending_bind: memory-BIO applications (node, .NET) encrypt in SSL_write and send the record
 *   with a syscall after it returns, on the same thread: the session waiting for that syscall
 * - last_ingress_fd: ... and read the record with a syscall before SSL_read: the last socket read
 * - traced: the process is traced; remembered so that each call skips the selection (reading the
 *   process name and comparing it costs as much as the rest of a sys_enter probe). Cleared at
 *   exec, which can change the name and the namespaces; a rename by prctl away from a selected
 *   name is not seen (threads found untraced are remembered apart: untraced_threads). */
struct thread_state {
	struct io_args io;
	struct emit_ctx emit;
	struct iov_ctx iov;
	struct iov_gather gather;
	__u64 tls_ctx[2];
	__s32 tls_fd[2];
	__u64 pending_bind;
	__u32 call_fd;
	__u32 last_ingress_fd;
	__u8 io_active;
	__u8 call_fd_active;
	__u8 tls_active[2];
	__u8 pending_bind_active;
	__u8 last_ingress_active;
	__u8 traced; /* should_trace() said yes for this thread's process (until its next exec) */
	__u8 go_tls; /* has run a Go crypto/tls call: its socket syscalls are cross-checked (go_tls.h) */
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
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} trace_pids SEC(".maps") SHARED_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drop_counters SEC(".maps") SHARED_MAP;

static __always_inline void count_drop(__u32 reason, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&drop_counters, &reason);
	/* atomic although per CPU: on a preemptible kernel (PREEMPT_RT, faultable syscall
	 * tracepoints) another task's probe can run on this CPU between a load and a store */
	if (v)
		__sync_fetch_and_add(v, n);
}

#endif
