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
 * then reaches user space before anything it causes. Sent at the return, a request could come after
 * its own response: the writing goroutine's return runs after its socket write, and on loopback the
 * peer's answer is read and returned on another thread first (seen with net/http's client, whose
 * writes and reads are separate goroutines). A write that fails part-way (the connection broke) is
 * then sent whole. */
#include "common.h"
#include "tls.h"

/* The attach cookie of an entry probe (user space packs it, see GoTlsProvider):
 *   bits 0-31   the *net.TCPConn itab's address minus the function's entry address (signed), so
 *               that the itab's run-time address is the probe's ip plus it; 0 when the binary's
 *               itab was not found (the interface's type is then not checked)
 *   bits 32-39  offset of tls.Conn.conn (a net.Conn interface: itab word, data word)
 *   bits 40-47  offset of net.TCPConn's *netFD (its conn.fd)
 *   bits 48-55  offset of poll.FD.Sysfd in netFD (pfd is netFD's first field)
 * The compat set has no cookies (bpf_get_attach_cookie came in 5.15): it reads with the offsets
 * every supported Go version has (user space refuses a binary whose table differs) and cannot check
 * the itab; the socket must then still be one the collector knows (conn_of_fd). */
#define GO_DEFAULT_COOKIE ((0ULL << 32) | (0ULL << 40) | (16ULL << 48))

static __always_inline __u64 go_cookie(void *ctx)
{
#ifdef COLLECTOR_COMPAT
	return GO_DEFAULT_COOKIE;
#else
	return bpf_get_attach_cookie(ctx);
#endif
}

#define GO_FD_NOT_TCP (-2)
#define GO_REENTRY_MAX_NS (100ULL * 1000000) /* a call's entry runs again after its stack grew: at once */

/* The socket behind a *tls.Conn: GO_FD_NOT_TCP when its net.Conn is not a *net.TCPConn (a wrapped
 * connection, a tls.Conn inside a tls.Conn), -1 when it cannot be read. */
static __always_inline __s32 go_conn_fd(__u64 conn, __u64 ip, __u64 cookie)
{
	__s32 itab_delta = (__s32)cookie;
	__u64 iface[2]; /* itab, data */
	if (bpf_probe_read_user(iface, sizeof(iface), (const void *)(conn + ((cookie >> 32) & 0xff))) != 0)
		return -1;
	if (itab_delta != 0 && iface[0] != ip + (__s64)itab_delta)
		return GO_FD_NOT_TCP;
	__u64 netfd = 0;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (const void *)(iface[1] + ((cookie >> 40) & 0xff))) != 0 || !netfd)
		return -1;
	__s64 sysfd = -1;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (const void *)(netfd + ((cookie >> 48) & 0xff))) != 0)
		return -1;
	if (sysfd < 0 || sysfd > 0x7fffffff)
		return -1;
	return (__s32)sysfd;
}

static __always_inline void go_tls_enter(struct pt_regs *ctx, const __u32 direction)
{
	if (!settings.capture_tls)
		return;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct thread_state *t;
	if (!thread_traced(tgid, &t))
		return;
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
	__u64 len = ctx->cx;
	if (direction == DIRECTION_EGRESS && call.fd >= 0 && len > 0) {
		t = traced_thread_state(t);
		if (t) {
			/* out_len (unused by Go) says the plaintext went at the entry */
			call.out_len = 1;
			tls_plaintext(tgid, direction, &call, len, t, 0);
		}
	}
	/* still followed to its return: its end (the call key freed) and the calls nested in it */
	if (bpf_map_update_elem(&tls_calls, &key, &call, BPF_ANY) != 0)
		count_drop(DROP_ACTIVE_CALLS_FULL, 1);
}

static __always_inline void go_tls_return(struct pt_regs *ctx, const __u32 direction)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tls_call_key key = tls_goroutine_key(tgid, direction, ctx->r14);
	struct tls_call *running = tls_running_call(&key);
	if (!running)
		return; /* entered before the probes were attached, or not traced */
	if (running->sp > 0) {
		running->sp--; /* a nested call (see go_tls_enter) returns */
		return;
	}
	struct tls_call call = *running;
	bpf_map_delete_elem(&tls_calls, &key);
	long n = (long)ctx->ax;
	if (n <= 0 || call.out_len)
		return; /* nothing moved, or a write sent at its entry */
	if (call.fd == GO_FD_NOT_TCP) {
		count_drop(DROP_GO_CONN_NOT_TCP_BYTES, n);
		return;
	}
	struct thread_state *t;
	if (!thread_traced(tgid, &t))
		return;
	t = traced_thread_state(t);
	if (!t)
		return;
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
