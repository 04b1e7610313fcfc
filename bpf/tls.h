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

/* ---- TLS calls, under their caller's key ----
 *
 * Every TLS source goes through the same steps, whatever its caller:
 *   entry:  key = tls_thread_key() or tls_goroutine_key();
 *           tls_call_begin(&key, tls_running_call(&key), session, buffer, ..., source, sp)
 *   return: tls_call_end(&key, tls_running_call(&key), sp, &call);
 *           tls_plaintext(tgid, direction, &call, tls_call_bytes(&call, ret), t, ...)
 * and tls_plaintext() finds the socket, keeps the session's positions and sends the plaintext in
 * chunks (gaps and all) as the syscall path does. */

/* The key of the current thread's call in one direction (the C libraries). */
static __always_inline struct tls_call_key tls_thread_key(__u64 pid_tgid, __u32 direction)
{
	struct tls_call_key key = {
		.tgid = pid_tgid >> 32,
		.caller = TLS_CALLER_THREAD,
		.direction = direction & 1,
		.id = (__u32)pid_tgid,
	};
	return key;
}

/* The key of a goroutine's call in one direction (Go's crypto/tls; g is the goroutine pointer). */
static __always_inline struct tls_call_key tls_goroutine_key(__u32 tgid, __u32 direction, __u64 g)
{
	struct tls_call_key key = {
		.tgid = tgid,
		.caller = TLS_CALLER_GOROUTINE,
		.direction = direction & 1,
		.id = g,
	};
	return key;
}

/* The call in progress under key, or NULL. */
static __always_inline struct tls_call *tls_running_call(const struct tls_call_key *key)
{
	return bpf_map_lookup_elem(&tls_calls, key);
}

/* A call begins under key; running is the call in progress under the same key, NULL if none.
 * fd is the socket when the source knows it from the call's arguments, else -1. Returns 1 when the
 * call is followed, 0 when it is not: nested in the running call, or no room (counted). */
static __always_inline int tls_call_begin(const struct tls_call_key *key, struct tls_call *running,
					  __u64 ctx, __u64 buf, __u64 out_len, __s32 fd, __u32 source,
					  __u64 sp)
{
	__u64 now = bpf_ktime_get_ns();
	if (running) {
		if (running->ctx != ctx && sp < running->sp && running->sp - sp < TLS_NEST_MAX_STACK &&
		    now - running->entry_ns < TLS_NEST_MAX_NS) {
			/* A call of another session made inside this one (TLS inside TLS: curl through an
			 * HTTPS proxy, where the proxy's session carries the origin's records). The call
			 * already running has the application's plaintext; this one's is the other's
			 * records: mark its session a transport, whose plaintext is not sent, and keep the
			 * running call. Bounded in stack distance and time, so that a slot whose return was
			 * never seen (a longjmp out of the library) is not taken for a running call. */
			struct tls_key k = {.tgid = key->tgid, .ctx = ctx};
			struct tls_stream *ts = tls_stream_of(&k);
			if (ts)
				ts->transport = 1;
			return 0;
		}
		/* the running call's plaintext is lost (or its return was never seen): say so */
		count_drop(DROP_TLS_CALLS_OVERLAPPED, 1);
	}
	struct tls_call call = {
		.ctx = ctx,
		.buf = buf,
		.out_len = out_len,
		.sp = sp,
		.entry_ns = now,
		.fd = fd,
		.source = source,
	};
	if (running) {
		*running = call;
		return 1;
	}
	if (bpf_map_update_elem(&tls_calls, key, &call, BPF_ANY) != 0) {
		count_drop(DROP_ACTIVE_CALLS_FULL, 1);
		return 0;
	}
	return 1;
}

/* A call under key returns at stack pointer sp; running is the call in progress under the key.
 * Returns 1 with the call moved out of the map into *call when it has ended, 0 when there is none
 * or the return is a nested call's (see tls_call_begin), whose caller's call still runs. */
static __always_inline int tls_call_end(const struct tls_call_key *key, struct tls_call *running,
					__u64 sp, struct tls_call *call)
{
	if (!running || sp < running->sp)
		return 0;
	*call = *running;
	bpf_map_delete_elem(&tls_calls, key);
	return 1;
}

/* The plaintext bytes of a call that returned ret: 0 when it failed or moved nothing. */
static __always_inline __u64 tls_call_bytes(const struct tls_call *call, long ret)
{
	if (ret <= 0)
		return 0;
	__u64 bytes = ret;
	if (call->out_len) {
		/* SSL_read_ex/SSL_write_ex return 1 and put the byte count in *out_len */
		bytes = 0;
		if (bpf_probe_read_user(&bytes, sizeof(bytes), (const void *)call->out_len) != 0)
			return 0;
	}
	return bytes;
}

/* Sends the bytes of plaintext of an ended call: the one path of every TLS source. The socket is
 * the call's own (its arguments, or a syscall inside it), else the session's known one, else, for
 * a thread caller (thread_guesses: the memory-BIO applications, node and .NET, move the records
 * with syscalls of their own on the same thread), the thread's last socket read; when none is
 * known the plaintext goes unbound and user space holds it until the bind event. t is the current
 * thread's state, which must exist: emit_buffer works in it (a goroutine can return on a thread
 * that never made a traced call: its source makes the state first, traced_thread_state()). */
static __always_inline void tls_plaintext(__u32 tgid, __u32 direction, const struct tls_call *call,
					  __u64 bytes, struct thread_state *t, const int thread_guesses)
{
	if (bytes == 0)
		return;
	struct tls_key k = {.tgid = tgid, .ctx = call->ctx};
	__s32 fd = call->fd;
	if (fd < 0) {
		__s32 *known = bpf_map_lookup_elem(&tls_fds, &k);
		if (known)
			fd = *known;
	}
	int guessed = 0;
	if (thread_guesses && fd < 0 && direction == DIRECTION_INGRESS) {
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
		if (st && guessed && st->tls_ctx != 0 && st->tls_ctx != call->ctx)
			st = NULL;
		if (st)
			bind_tls(tgid, call->ctx, fd, st);
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
		emit_buffer(tgid, fd, st->generation, pos, call->buf, bytes, bytes, direction, call->source,
			    call->ctx);
		return;
	}
	/* Socket not known yet: send the plaintext now, user space holds it until the bind event.
	 * A write's record leaves with this thread's next socket write. */
	if (thread_guesses && direction == DIRECTION_EGRESS) {
		t->pending_bind = call->ctx;
		t->pending_bind_active = 1;
	}
	emit_buffer(tgid, UNBOUND_FD, 0, pos, call->buf, bytes, bytes, direction, call->source, call->ctx);
}

/* A TLS call of this thread is in progress: the syscall names its socket. Returns 1 when so. */
static __always_inline int claim_for_tls(struct thread_state *t, __u32 tgid, struct conn_state *st, __u32 fd)
{
	__u64 ctx;
	if (t->tls_active[DIRECTION_INGRESS]) {
		t->tls_fd[DIRECTION_INGRESS] = fd;
		ctx = t->tls_ctx[DIRECTION_INGRESS];
	} else if (t->tls_active[DIRECTION_EGRESS]) {
		t->tls_fd[DIRECTION_EGRESS] = fd;
		ctx = t->tls_ctx[DIRECTION_EGRESS];
	} else {
		return 0;
	}
	bind_tls(tgid, ctx, fd, st);
	return 1;
}

/* ---- the C libraries' calls: the thread is the caller ---- */

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
	struct tls_call_key key = tls_thread_key(id, direction);
	struct tls_call *running = NULL;
	if (t->tls_active[direction & 1]) {
		running = tls_running_call(&key);
		if (!running)
			count_drop(DROP_ACTIVE_CALLS_FULL, 1); /* the running call was evicted */
	}
	if (!tls_call_begin(&key, running, (__u64)ctx_ptr, (__u64)buf, (__u64)out_len, -1, source, sp))
		return;
	t->tls_active[direction & 1] = 1;
	t->tls_ctx[direction & 1] = (__u64)ctx_ptr;
	t->tls_fd[direction & 1] = -1;
	/* a record still waiting for its socket write belongs to an earlier call: stop guessing */
	t->pending_bind_active = 0;
}

static __always_inline void tls_exit(const __u32 direction, long ret, __u64 sp)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct thread_state *t = thread_state(0);
	if (!t || !t->tls_active[direction & 1])
		return;
	struct tls_call_key key = tls_thread_key(id, direction);
	struct tls_call *running = tls_running_call(&key);
	if (!running) {
		/* evicted while it ran: its plaintext is lost */
		t->tls_active[direction & 1] = 0;
		count_drop(DROP_ACTIVE_CALLS_FULL, 1);
		return;
	}
	struct tls_call call;
	if (!tls_call_end(&key, running, sp, &call))
		return; /* a nested call returns (see tls_call_begin); the call it was made in still runs */
	t->tls_active[direction & 1] = 0;
	call.fd = t->tls_fd[direction & 1]; /* a syscall inside the call named the socket */
	tls_plaintext(id >> 32, direction, &call, tls_call_bytes(&call, ret), t, 1);
}

#endif
