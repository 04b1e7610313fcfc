/* Go's crypto/tls: (*Conn).Read and (*Conn).Write of Go 1.17+ binaries on amd64 (the register
 * ABI), found by user space in the binary's own tables (stripped binaries too, see
 * src/Collector/Kernel/Go). Never a return probe: Go moves goroutine stacks, and a return address
 * rewritten by a uretprobe breaks its stack copying and unwinding. A probe at the entry saves the
 * call; a probe at each RET of the function (found by disassembly) ends it.
 *
 * The caller is the goroutine (R14 holds its g under the register ABI), not the thread: a Read
 * that parks waiting for data resumes on whichever thread the scheduler picks.
 *
 * Registers (ABIInternal): at the entry RAX = the *tls.Conn, RBX = b's data, RCX = len(b); at a
 * RET, RAX = n. Read may return n > 0 with an error (io.EOF after close_notify): b[:n] is
 * plaintext whatever the error.
 *
 * A Write's plaintext is sent at its entry (Write never changes b), a Read's at its return: each
 * then reaches user space before anything it causes. A Write whose socket is not known at its entry
 * (a wrapped net.Conn) is sent at the first syscall it makes (go_tls.h), else at its return. Sent at the return, a request could come after
 * its own response: the writing goroutine's return runs after its socket write, and on loopback the
 * peer's answer is read and returned on another thread first (seen with net/http's client, whose
 * writes and reads are separate goroutines). A write that fails part-way (the connection broke) is
 * then sent whole. */
#include "common.h"
#include "go_tls.h"

static __always_inline void go_tls_enter(struct pt_regs *ctx, const __u32 direction)
{
	if (!settings.capture_tls)
		return;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct thread_state *t;
	if (!thread_traced(tgid, &t))
		return;
	t = traced_thread_state(t);
	if (!t)
		return;
	t->go_tls = 1; /* its socket syscalls may be a Go call's (go_tls_syscall) */
	__u64 conn = ctx->ax, buf = ctx->bx;
	struct tls_call_key key = tls_goroutine_key(tgid, direction, ctx->r14);
	struct tls_call *running = tls_running_call(&key);
	__u64 now = bpf_ktime_get_ns();
	if (running) {
		if (running->ctx == conn && running->buf == buf && now - running->entry_ns < GO_REENTRY_MAX_NS) {
			/* The same call entered again: the prologue found the stack too small, grew it
			 * (moving it) and jumped back to the first instruction. */
			return;
		}
		if (now - running->entry_ns < TLS_NEST_MAX_NS) {
			/* A call of another tls.Conn inside the running one on the same goroutine: TLS
			 * inside TLS (a client through an HTTPS proxy). The running call has the
			 * application's plaintext; this one carries the other session's records: its session
			 * is a transport, and its return must not end the running call (sp counts the
			 * nested calls: a Go call's stack pointer says nothing, its stack moves). */
			struct tls_key k = {.tgid = tgid, .ctx = conn};
			struct tls_stream *ts = tls_stream_of(&k);
			if (ts)
				ts->transport = 1;
			running->sp++;
			/* the running call's net.Conn is this tls.Conn: the socket is this one's */
			if (running->fd < 0)
				running->fd = go_conn_fd(conn, PT_REGS_IP(ctx), go_cookie(ctx));
			return;
		}
		/* its return was never seen (a panic unwound through it): its plaintext is lost */
		count_drop(DROP_TLS_CALLS_OVERLAPPED, 1);
	}
	struct tls_call call = {
		.ctx = conn,
		.buf = buf,
		.entry_ns = now,
		.fd = go_conn_fd(conn, PT_REGS_IP(ctx), go_cookie(ctx)),
		.source = SOURCE_GO_TLS,
	};
	if (call.fd == GO_FD_NOT_TCP) {
		/* a wrapped net.Conn: a syscall inside an earlier call may have named its socket */
		struct tls_key k = {.tgid = tgid, .ctx = conn};
		__s32 *known = bpf_map_lookup_elem(&tls_fds, &k);
		if (known)
			call.fd = *known;
	}
	__u64 len = ctx->cx;
	if (direction == DIRECTION_EGRESS && len > 0) {
		if (call.fd >= 0)
			tls_plaintext(tgid, direction, &call, len, t, 0);
		else
			call.out_len = len; /* sent at the first syscall inside it, else at its return */
	}
	/* still followed to its return: its end (the call key freed), the calls nested in it and the
	 * syscalls it makes */
	if (bpf_map_update_elem(&tls_calls, &key, &call, BPF_ANY) != 0)
		count_drop(DROP_ACTIVE_CALLS_FULL, 1);
}

/* A return without its entry: the call began before the probes were attached (a server's
 * goroutine parked in Read on a kept-alive connection when the collector started), or its entry
 * found no room (counted there), or the process is not traced. The prologue stored the receiver
 * and b in their spill slots above the return address (user space checked it by disassembly and
 * says so in the cookie, GO_COOKIE_ARGS_SPILLED): read there, the call is captured like any other.
 * The compat set has no cookie to say so: such a call's bytes are counted. */
static __always_inline void go_tls_return_unentered(struct pt_regs *ctx, __u32 tgid, const __u32 direction)
{
	long n = (long)ctx->ax;
	if (n <= 0 || !settings.capture_tls)
		return;
	struct thread_state *t;
	if (!thread_traced(tgid, &t))
		return;
	__u64 cookie = go_cookie(ctx);
	__u64 args[3]; /* the *tls.Conn, b's data, len(b) */
	if (!(cookie & GO_COOKIE_ARGS_SPILLED) ||
	    bpf_probe_read_user(args, sizeof(args), (const void *)(PT_REGS_SP(ctx) + 8)) != 0 ||
	    !args[0] || !args[1] || args[2] < (__u64)n) {
		count_drop(DROP_GO_BEFORE_ATTACH_BYTES, n);
		return;
	}
	struct tls_call call = {
		.ctx = args[0],
		.buf = args[1],
		.entry_ns = bpf_ktime_get_ns(),
		.fd = go_conn_fd(args[0], PT_REGS_IP(ctx), cookie),
		.source = SOURCE_GO_TLS,
	};
	if (call.fd == GO_FD_NOT_TCP) {
		struct tls_key k = {.tgid = tgid, .ctx = call.ctx};
		__s32 *known = bpf_map_lookup_elem(&tls_fds, &k);
		if (!known) {
			count_drop(DROP_GO_CONN_NOT_TCP_BYTES, n);
			return;
		}
		call.fd = *known;
	}
	t = traced_thread_state(t);
	if (!t)
		return;
	t->go_tls = 1;
	tls_plaintext(tgid, direction, &call, (__u64)n, t, 0);
}

static __always_inline void go_tls_return(struct pt_regs *ctx, const __u32 direction)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tls_call_key key = tls_goroutine_key(tgid, direction, ctx->r14);
	struct tls_call *running = tls_running_call(&key);
	if (!running) {
		go_tls_return_unentered(ctx, tgid, direction);
		return;
	}
	if (running->sp > 0) {
		running->sp--; /* a nested call (see go_tls_enter) returns */
		return;
	}
	struct tls_call call = *running;
	bpf_map_delete_elem(&tls_calls, &key);
	long n = (long)ctx->ax;
	if (n <= 0)
		return; /* nothing moved */
	if (direction == DIRECTION_EGRESS && !call.out_len)
		return; /* a write sent at its entry, or at a syscall inside it */
	if (call.fd == GO_FD_NOT_TCP) {
		struct tls_key k = {.tgid = tgid, .ctx = call.ctx};
		__s32 *known = bpf_map_lookup_elem(&tls_fds, &k);
		if (!known) {
			count_drop(DROP_GO_CONN_NOT_TCP_BYTES, n);
			return;
		}
		call.fd = *known;
	}
	struct thread_state *t;
	if (!thread_traced(tgid, &t))
		return;
	t = traced_thread_state(t);
	if (!t)
		return;
	t->go_tls = 1;
	/* no guessing from the thread's sockets: the goroutine may have run on several threads */
	tls_plaintext(tgid, direction, &call, (__u64)n, t, 0);
}

SEC("uprobe")
int PROG_KPROBE(PROG(go_tls_write_enter))
{
	go_tls_enter(ctx, DIRECTION_EGRESS);
	return 0;
}

SEC("uprobe")
int PROG_KPROBE(PROG(go_tls_write_return))
{
	go_tls_return(ctx, DIRECTION_EGRESS);
	return 0;
}

SEC("uprobe")
int PROG_KPROBE(PROG(go_tls_read_enter))
{
	go_tls_enter(ctx, DIRECTION_INGRESS);
	return 0;
}

SEC("uprobe")
int PROG_KPROBE(PROG(go_tls_read_return))
{
	go_tls_return(ctx, DIRECTION_INGRESS);
	return 0;
}
