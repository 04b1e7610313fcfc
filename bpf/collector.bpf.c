// SPDX-License-Identifier: GPL-2.0
/* HTTP capture at the socket syscalls (tracepoints) and at the TLS libraries (uprobes).
 *
 * The kernel this runs on has no kprobes and no fentry, so everything here is a syscall
 * tracepoint or a uprobe. Arguments are saved at sys_enter keyed by pid_tgid and the data is
 * read at sys_exit, when the byte count is known. Sockets are recognised from the fd table of the
 * task (not from having seen accept/connect), so connections opened before the collector started
 * are captured too. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "collector.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2
#define MAX_CHUNKS_LIMIT 64 /* hard ceiling for max_chunks_per_call */
#define MAX_IOV_WALK 16     /* iovec entries walked per call; the rest becomes a gap */
#define MAX_MMSG_WALK 4     /* messages of sendmmsg/recvmmsg walked per call */

const volatile struct collector_config settings = {
	.capture_plain = 1,
	.capture_tls = 1,
	.chunk_size = MAX_DATA_SIZE,
	.max_chunks_per_call = 8,
	.wakeup_bytes = 256 * 1024,
};

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
} events SEC(".maps");

/* LRU: connections whose process ended without close() (user space deletes them on exit, but an
 * exit event can be lost) age out instead of filling the map for good. Live connections are
 * looked up on every call and so stay recent. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized by user space */
	__type(key, struct conn_key);
	__type(value, struct conn_state);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct io_args);
} active_io SEC(".maps");

/* The fd of a connect() or sendfile() in progress, per thread (a thread is in one call at a time). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} active_fd SEC(".maps");

/* One entry per TLS call in progress per thread; two maps because SSL_write may call
 * SSL_read-like internals and a read and a write are never nested on one thread otherwise. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_args);
} active_tls_read SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_args);
} active_tls_write SEC(".maps");

/* SSL * → fd, for reads served from the library's buffer without a syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_key);
	__type(value, __s32);
} tls_fds SEC(".maps");

/* Plaintext positions per TLS session: a session is one connection's TLS stream, and keeping
 * them here lets data be sent before the session's socket is known. */
struct tls_stream {
	__u64 pos[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_key);
	__type(value, struct tls_stream);
} tls_streams SEC(".maps");

/* Memory-BIO applications (node, .NET) encrypt in SSL_write and send the record with a syscall
 * after it returns, on the same thread: the session waiting for that syscall, per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} pending_bind SEC(".maps");

/* ... and read the record with a syscall before SSL_read: the last socket read, per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} last_ingress_fd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} trace_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drop_counters SEC(".maps");

static __u32 next_generation = 0;

static __always_inline void count_drop(__u32 reason, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&drop_counters, &reason);
	if (v)
		*v += n;
}

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
	st.generation = __sync_fetch_and_add(&next_generation, 1) + 1;
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

/* Decides from a connection's first bytes whether it carries HTTP/1.x.
 * Returns 1 when it may be HTTP (a method token or "HTTP/"), 0 when it cannot be, and leaves the
 * decision open (-1) when too few bytes were seen. TLS records are marked as such, not counted. */
static __always_inline int judge_first_bytes(struct conn_state *st, const void *buf, __u64 len)
{
	if (st->flags & (CONN_HTTP | CONN_NOT_HTTP))
		return (st->flags & CONN_HTTP) ? 1 : 0;
	__u8 head[4] = {};
	if (len < 4)
		return -1;
	if (bpf_probe_read_user(head, sizeof(head), buf) != 0)
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
	/* A connection first seen mid-stream may be in the middle of a body: skip this call, and
	 * judge again at the next one, which may start a message. */
	if (st->flags & CONN_PREEXISTING)
		return 0;
	st->flags |= CONN_NOT_HTTP;
	return 0;
}

/* State of the chunk loops lives in per-CPU maps, not on the stack: the verifier then sees every
 * iteration of a bpf_loop callback start from the same state and checks it once, whatever the
 * loop count (on the stack it tracked each iteration's exact offsets, and the cost grew with
 * max_chunks_per_call past the verifier's limit). */
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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emit_ctx);
} emit_state SEC(".maps");

/* One chunk of emit_buffer; a bpf_loop callback so that the verifier walks it once. */
static long emit_chunk(__u32 index, void *unused)
{
	__u32 zero = 0;
	struct emit_ctx *c = bpf_map_lookup_elem(&emit_state, &zero);
	if (!c)
		return 1;
	if (c->off >= c->len)
		return 1;
	struct data_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 1;
	__u64 n = c->len - c->off;
	__u32 limit = settings.chunk_size;
	if (limit > MAX_DATA_SIZE)
		limit = MAX_DATA_SIZE;
	if (n > limit)
		n = limit;
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
	e->tls_ctx = c->tls_ctx;
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
	__u32 zero = 0;
	struct emit_ctx *c = bpf_map_lookup_elem(&emit_state, &zero);
	if (!c)
		return;
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
	__u32 chunks = settings.max_chunks_per_call;
	if (chunks > MAX_CHUNKS_LIMIT)
		chunks = MAX_CHUNKS_LIMIT;
	bpf_loop(chunks, emit_chunk, NULL, 0);
	if (c->off < len)
		count_drop(DROP_BEYOND_CAPTURE_BYTES, len - c->off);
}

/* ---- plaintext at the syscalls ---- */

static __always_inline void enter_io(__u32 fd, __u64 buf, __u32 count, __u32 kind, __u32 direction)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!should_trace(tgid))
		return;
	if (!conn_of_fd(tgid, fd))
		return;
	struct io_args args = {.buf = buf, .fd = fd, .count = count, .kind = kind, .direction = direction};
	if (bpf_map_update_elem(&active_io, &id, &args, BPF_ANY) != 0)
		count_drop(DROP_ACTIVE_CALLS_FULL, 1);
}

/* Ties a TLS session to its socket; tells user space when the tie is new, so that plaintext sent
 * before it was known finds its connection. */
static __always_inline void bind_tls(__u32 tgid, __u64 ctx, __u32 fd, struct conn_state *st)
{
	struct tls_key k = {.tgid = tgid, .ctx = ctx};
	__s32 v = fd;
	__s32 *known = bpf_map_lookup_elem(&tls_fds, &k);
	st->flags |= CONN_TLS;
	st->tls_ctx = ctx;
	if (known && *known == v)
		return;
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
static __always_inline int claim_for_tls(__u64 id, struct conn_state *st, __u32 fd)
{
	struct tls_args *t = bpf_map_lookup_elem(&active_tls_read, &id);
	if (!t)
		t = bpf_map_lookup_elem(&active_tls_write, &id);
	if (!t)
		return 0;
	t->fd = fd;
	bind_tls(id >> 32, t->ctx, fd, st);
	return 1;
}

/* Emits the plaintext of one buffer of a syscall, or counts it when the connection is not HTTP. */
static __always_inline void plain_buffer(__u32 tgid, __u32 fd, struct conn_state *st, __u64 buf,
					 __u64 len, __u64 call_bytes, __u32 direction)
{
	__u64 pos = st->plain_pos[direction & 1];
	st->plain_pos[direction & 1] = pos + len;
	if (st->flags & CONN_TLS)
		return;
	if (!settings.capture_plain)
		return;
	int judged = judge_first_bytes(st, (const void *)buf, len);
	if (judged == 0) {
		if (!(st->flags & CONN_TLS))
			count_drop(DROP_NOT_HTTP_BYTES, len);
		return;
	}
	emit_buffer(tgid, fd, st->generation, pos, buf, len, call_bytes, direction, SOURCE_SYSCALL, 0);
}

struct iovec_user {
	__u64 base;
	__u64 len;
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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iov_ctx);
} iov_state SEC(".maps");

static long iov_entry(__u32 i, void *unused)
{
	__u32 zero = 0;
	struct iov_ctx *c = bpf_map_lookup_elem(&iov_state, &zero);
	if (!c)
		return 1;
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

static __always_inline void plain_iov(__u32 tgid, __u32 fd, struct conn_state *st, __u64 iov,
				      __u32 iovcnt, __u64 total, __u32 direction)
{
	__u32 zero = 0;
	struct iov_ctx *c = bpf_map_lookup_elem(&iov_state, &zero);
	if (!c)
		return;
	c->iov = iov;
	c->left = total;
	c->total = total;
	c->iovcnt = iovcnt;
	c->tgid = tgid;
	c->fd = fd;
	c->direction = direction;
	bpf_loop(MAX_IOV_WALK, iov_entry, NULL, 0);
	if (c->left > 0) {
		/* iovecs past the walk limit: keep positions exact so user space sees the gap */
		count_drop(DROP_IOV_SKIPPED, c->left);
		st->plain_pos[direction & 1] += c->left;
	}
}

static __always_inline void exit_io(long ret, const int kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct io_args *args = bpf_map_lookup_elem(&active_io, &id);
	if (!args)
		return;
	struct io_args a = *args;
	bpf_map_delete_elem(&active_io, &id);
	if (ret <= 0)
		return;
	__u32 tgid = id >> 32;
	struct conn_key key = {.tgid = tgid, .fd = a.fd};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return;
	if (claim_for_tls(id, st, a.fd))
		return;
	/* Memory-BIO bookkeeping only for connections that carry TLS records: plaintext connections
	 * (the hot path) pay nothing for it. */
	if (st->flags & CONN_TLS) {
		if (a.direction == DIRECTION_EGRESS) {
			__u64 *pending = bpf_map_lookup_elem(&pending_bind, &id);
			/* a guess: never move a socket already tied to another session */
			if (pending && (st->tls_ctx == 0 || st->tls_ctx == *pending)) {
				bind_tls(tgid, *pending, a.fd, st);
				bpf_map_delete_elem(&pending_bind, &id);
			}
		} else {
			__u32 fd = a.fd;
			bpf_map_update_elem(&last_ingress_fd, &id, &fd, BPF_ANY);
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
		if (ret > MAX_MMSG_WALK)
			count_drop(DROP_IOV_SKIPPED, ret - MAX_MMSG_WALK);
	}
}

SEC("tracepoint/syscalls/sys_enter_read")
int sys_enter_read(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int sys_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_BUF);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_write")
int sys_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_BUF);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int sys_enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	/* a peek reads the same bytes again later: not part of the stream */
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int sys_exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_BUF);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int sys_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], 0, IO_BUF, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int sys_exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_BUF);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_readv")
int sys_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_IOV, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_readv")
int sys_exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_IOV);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int sys_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_IOV, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_writev")
int sys_exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_IOV);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int sys_enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[2] & MSG_PEEK)
		return 0;
	enter_io(ctx->args[0], ctx->args[1], 0, IO_MSG, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int sys_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_MSG);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int sys_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], 0, IO_MSG, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int sys_exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_MSG);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int sys_enter_recvmmsg(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_MMSG, DIRECTION_INGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int sys_exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_MMSG);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int sys_enter_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	enter_io(ctx->args[0], ctx->args[1], ctx->args[2], IO_MMSG, DIRECTION_EGRESS);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int sys_exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	exit_io(ctx->ret, IO_MMSG);
	return 0;
}

/* sendfile: the bytes never pass through user memory. Advance the position so that user space
 * sees an exact gap, and count the bytes. */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int sys_enter_sendfile64(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!should_trace(tgid))
		return 0;
	__u32 fd = ctx->args[0];
	struct conn_key key = {.tgid = tgid, .fd = fd};
	if (!bpf_map_lookup_elem(&conns, &key))
		return 0;
	__u32 v = fd;
	bpf_map_update_elem(&active_fd, &id, &v, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int sys_exit_sendfile64(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 *fd = bpf_map_lookup_elem(&active_fd, &id);
	if (!fd)
		return 0;
	struct conn_key key = {.tgid = id >> 32, .fd = *fd};
	bpf_map_delete_elem(&active_fd, &id);
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
	if (ret < 0 || !should_trace(tgid))
		return;
	struct sock *sk = tcp_sock_of_fd(ret);
	if (!sk)
		return;
	struct conn_key key = {.tgid = tgid, .fd = ret};
	track_conn(&key, sk, ORIGIN_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	accepted(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int sys_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!should_trace(id >> 32))
		return 0;
	__u32 fd = ctx->args[0];
	bpf_map_update_elem(&active_fd, &id, &fd, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 *fdp = bpf_map_lookup_elem(&active_fd, &id);
	if (!fdp)
		return 0;
	__u32 fd = *fdp;
	bpf_map_delete_elem(&active_fd, &id);
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
int sys_enter_close(struct trace_event_raw_sys_enter *ctx)
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
	if (st->tls_ctx) {
		struct tls_key k = {.tgid = key.tgid, .ctx = st->tls_ctx};
		bpf_map_delete_elem(&tls_fds, &k);
		bpf_map_delete_elem(&tls_streams, &k);
	}
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

/* ---- processes ---- */

SEC("tracepoint/sched/sched_process_exec")
int sched_process_exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
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

SEC("tracepoint/sched/sched_process_exit")
int sched_process_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	/* the last thread of the process, whichever it is (not the leader: it may exit first) */
	if (!BPF_CORE_READ(ctx, group_dead) || !should_trace(tgid))
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

static __always_inline void tls_enter(void *map, void *ctx_ptr, const void *buf, void *out_len, __u32 source)
{
	if (!settings.capture_tls)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	if (!should_trace(id >> 32))
		return;
	struct tls_args a = {.ctx = (__u64)ctx_ptr, .buf = (__u64)buf, .out_len = (__u64)out_len,
			     .fd = -1, .source = source};
	if (bpf_map_update_elem(map, &id, &a, BPF_ANY) != 0)
		count_drop(DROP_ACTIVE_CALLS_FULL, 1);
	/* a record still waiting for its socket write belongs to an earlier call: stop guessing */
	bpf_map_delete_elem(&pending_bind, &id);
}

static __always_inline void tls_exit(void *map, long ret, __u32 direction)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_args *ap = bpf_map_lookup_elem(map, &id);
	if (!ap)
		return;
	struct tls_args a = *ap;
	bpf_map_delete_elem(map, &id);
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
		__u32 *last = bpf_map_lookup_elem(&last_ingress_fd, &id);
		if (last) {
			fd = *last;
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
	struct tls_stream *ts = bpf_map_lookup_elem(&tls_streams, &k);
	if (!ts) {
		struct tls_stream fresh = {};
		bpf_map_update_elem(&tls_streams, &k, &fresh, BPF_NOEXIST);
		ts = bpf_map_lookup_elem(&tls_streams, &k);
		if (!ts)
			return;
	}
	__u64 pos = ts->pos[direction & 1];
	ts->pos[direction & 1] = pos + bytes;
	if (st) {
		st->tls_bytes += bytes;
		emit_buffer(tgid, fd, st->generation, pos, a.buf, bytes, bytes, direction, a.source, a.ctx);
		return;
	}
	/* Socket not known yet: send the plaintext now, user space holds it until the bind event.
	 * A write's record leaves with this thread's next socket write. */
	if (direction == DIRECTION_EGRESS)
		bpf_map_update_elem(&pending_bind, &id, &a.ctx, BPF_ANY);
	emit_buffer(tgid, UNBOUND_FD, 0, pos, a.buf, bytes, bytes, direction, a.source, a.ctx);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
	tls_enter(&active_tls_write, ssl, buf, NULL, SOURCE_OPENSSL);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_exit, int ret)
{
	tls_exit(&active_tls_write, ret, DIRECTION_EGRESS);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	tls_enter(&active_tls_read, ssl, buf, NULL, SOURCE_OPENSSL);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_exit, int ret)
{
	tls_exit(&active_tls_read, ret, DIRECTION_INGRESS);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	tls_enter(&active_tls_write, ssl, buf, written, SOURCE_OPENSSL);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	tls_enter(&active_tls_read, ssl, buf, readbytes, SOURCE_OPENSSL);
	return 0;
}

/* SSL_set_fd / SSL_set_rfd / SSL_set_wfd(SSL *ssl, int fd) */
SEC("uprobe")
int BPF_KPROBE(ssl_set_fd_enter, void *ssl, int fd)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!settings.capture_tls || !should_trace(id >> 32) || fd < 0)
		return 0;
	struct conn_state *st = conn_of_fd(id >> 32, fd);
	if (st)
		bind_tls(id >> 32, (__u64)ssl, fd, st);
	return 0;
}

/* SSL_free(SSL *ssl): the session's address may be reused by the next one: forget it. */
SEC("uprobe")
int BPF_KPROBE(ssl_free_enter, void *ssl)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_key k = {.tgid = id >> 32, .ctx = (__u64)ssl};
	bpf_map_delete_elem(&tls_fds, &k);
	bpf_map_delete_elem(&tls_streams, &k);
	return 0;
}

/* gnutls_record_send(session, data, size) / gnutls_record_recv(session, data, size) */
SEC("uprobe")
int BPF_KPROBE(gnutls_send_enter, void *session, const void *buf, __u64 size)
{
	tls_enter(&active_tls_write, session, buf, NULL, SOURCE_GNUTLS);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(gnutls_send_exit, long ret)
{
	tls_exit(&active_tls_write, ret, DIRECTION_EGRESS);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(gnutls_recv_enter, void *session, void *buf, __u64 size)
{
	tls_enter(&active_tls_read, session, buf, NULL, SOURCE_GNUTLS);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(gnutls_recv_exit, long ret)
{
	tls_exit(&active_tls_read, ret, DIRECTION_INGRESS);
	return 0;
}
