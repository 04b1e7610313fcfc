/* Plaintext at the socket syscalls (tracepoints): the buffers of read/write, send/recv, their
 * vector and message forms, sendfile's gap, and the life of a connection (accept, connect, close). */
#include "common.h"
#include "maps.h"
#include "selection.h"
#include "emit.h"
#include "conns.h"
#include "http_detect.h"
#include "tls.h"

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
#ifndef COLLECTOR_COMPAT
	go_tls_syscall(t, tgid, fd, direction);
#endif
	t->io.buf = buf;
	t->io.fd = fd;
	t->io.count = count;
	t->io.kind = kind;
	t->io.direction = direction;
	t->io_active = 1;
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
 * body): one data event for the whole call. Returns 0 when the call is not of that shape. The
 * buffers are gathered in the thread's storage (see struct iov_gather). */
static __always_inline int plain_iov_coalesced(struct thread_state *t, __u32 tgid, __u32 fd, struct conn_state *st,
					       __u64 iov, __u32 iovcnt, __u64 total, __u32 direction)
{
	struct iov_gather *g = &t->gather;
	__u64 left = total;
	g->head_len = 0;
	for (int i = 0; i < MAX_SEGMENTS; i++) {
		g->segs.len[i] = 0;
		if (i >= iovcnt)
			continue;
		struct iovec_user v = {};
		if (bpf_probe_read_user(&v, sizeof(v), (const void *)(iov + i * sizeof(v))) != 0)
			return 0;
		__u64 n = v.len < left ? v.len : left;
		g->segs.base[i] = v.base;
		g->segs.len[i] = n;
		g->segs.start[i] = total - left;
		left -= n;
		if (g->head_len == 0 && n > 0) {
			g->head = v.base;
			g->head_len = n;
		}
	}
	if (left != 0)
		return 0;
	/* read back from the map: what the loop knew about them stays behind */
	asm volatile("" ::: "memory");
	__s64 pos = plain_take(st, g->head, g->head_len, total, direction);
	if (pos < 0)
		return 1;
	struct emit_ctx c = {.position = pos, .call_bytes = total, .tgid = tgid, .fd = fd,
			     .generation = st->generation, .direction = direction, .source = SOURCE_SYSCALL};
	emit_direct(&c, &g->segs, total);
	return 1;
}

/* t is the current thread's state */
static __always_inline void plain_iov(struct thread_state *t, __u32 tgid, __u32 fd, struct conn_state *st, __u64 iov,
				      __u32 iovcnt, __u64 total, __u32 direction)
{
	if (copies_into_ring() && iovcnt <= MAX_SEGMENTS && total <= chunk_limit() &&
	    settings.max_chunks_per_call > 0 &&
	    plain_iov_coalesced(t, tgid, fd, st, iov, iovcnt, total, direction))
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

/* The messages of a sendmmsg/recvmmsg call, one per iteration: a loop callback, so that the verifier
 * walks plain_iov once rather than once per message (four unrolled copies took 0.9 s each to verify,
 * most of the object's load time). */
struct mmsg_walk {
	__u64 mmsg;
	__u64 count; /* messages moved, at most the vector's length */
	__u32 tgid;
	__u32 fd;
	__u32 direction;
};

static long mmsg_entry(__u32 m, struct mmsg_walk *w)
{
	if (m >= w->count)
		return 1;
	struct conn_key key = {.tgid = w->tgid, .fd = w->fd};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return 1;
	struct mmsghdr *mm = (struct mmsghdr *)(w->mmsg + m * sizeof(struct mmsghdr));
	__u64 iov = 0, iovlen = 0;
	__u32 msg_len = 0;
	bpf_probe_read_user(&iov, sizeof(iov), &mm->msg_hdr.msg_iov);
	bpf_probe_read_user(&iovlen, sizeof(iovlen), &mm->msg_hdr.msg_iovlen);
	bpf_probe_read_user(&msg_len, sizeof(msg_len), &mm->msg_len);
	struct thread_state *t = thread_state(0);
	if (!t)
		return 1;
	plain_iov(t, w->tgid, w->fd, st, iov, iovlen, msg_len, w->direction);
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
		plain_iov(t, tgid, a.fd, st, a.buf, a.count, ret, a.direction);
	} else if (kind == IO_MSG) {
		__u64 iov = 0, iovlen = 0;
		struct user_msghdr *msg = (struct user_msghdr *)a.buf;
		bpf_probe_read_user(&iov, sizeof(iov), &msg->msg_iov);
		bpf_probe_read_user(&iovlen, sizeof(iovlen), &msg->msg_iovlen);
		plain_iov(t, tgid, a.fd, st, iov, iovlen, ret, a.direction);
	} else {
		/* sendmmsg/recvmmsg: ret is the number of messages; each carries its own length */
		struct mmsg_walk w = {.mmsg = a.buf, .count = ret < a.count ? ret : a.count, .tgid = tgid,
				      .fd = a.fd, .direction = a.direction};
		LOOP(MAX_MMSG_WALK, mmsg_entry, &w);
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

