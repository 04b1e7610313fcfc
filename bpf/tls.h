/* TLS plaintext at the library, whichever library: sessions tied to their sockets, positions per
 * session, and the calls whose plaintext is sent at their return. */
#ifndef COLLECTOR_TLS_H
#define COLLECTOR_TLS_H

#include "maps.h"
#include "selection.h"
#include "emit.h"
#include "conns.h"

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

#endif
