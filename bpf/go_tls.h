/* Go's crypto/tls: what the uprobes (go_tls.c) and the socket syscalls (sockets.c) share: the
 * socket read from a *tls.Conn, and the cross-check of that socket against the syscalls a call
 * makes. */
#ifndef COLLECTOR_GO_TLS_H
#define COLLECTOR_GO_TLS_H

#include "maps.h"
#include "tls.h"

/* The attach cookie of an entry probe (user space packs it, see GoTlsProvider):
 *   bits 0-31   the *net.TCPConn itab's address minus the function's entry address (signed), so
 *               that the itab's run-time address is the probe's ip plus it; 0 when the binary's
 *               itab was not found (the interface's type is then not checked)
 *   bits 32-39  offset of tls.Conn.conn (a net.Conn interface: itab word, data word)
 *   bits 40-47  offset of net.TCPConn's *netFD (its conn.fd)
 *   bits 48-55  offset of poll.FD.Sysfd in netFD (pfd is netFD's first field)
 * A RET probe's cookie is the same with the itab's distance taken from the RET, and bit 56 set
 * when the function's prologue keeps its arguments in their spill slots (go_tls_return_unentered).
 * The compat set has no cookies (bpf_get_attach_cookie came in 5.15): it reads with the offsets
 * every supported Go version has (user space refuses a binary whose table differs) and cannot check
 * the itab; the socket must then still be one the collector knows (conn_of_fd). */
#define GO_COOKIE_ARGS_SPILLED (1ULL << 56) /* a RET probe's: the call's arguments are in their spill slots */
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

/* The socket a Go TLS call names, checked against the syscalls it makes (see go_tls_syscall). */
enum go_fd_check {
	GO_FD_MATCH = 0,    /* the syscall's socket is the one read from the tls.Conn */
	GO_FD_MISMATCH = 1, /* it is another: the syscall's is taken (a write sent at its entry went
			     * with the one read) */
	GO_FD_LEARNED = 2,  /* the tls.Conn named none (a wrapped net.Conn, TLS inside TLS, an
			     * unreadable chain): the syscall's is taken */
	GO_FD_CHECK_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GO_FD_CHECK_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} go_fd_checks SEC(".maps") SHARED_MAP;

static __always_inline void count_go_fd_check(__u32 result)
{
	__u64 *v = bpf_map_lookup_elem(&go_fd_checks, &result);
	if (v)
		__sync_fetch_and_add(v, 1);
}

#ifndef COLLECTOR_COMPAT
/* A socket syscall of a thread that runs Go TLS code: when the goroutine making it (R14 of the
 * user registers the syscall saved: Go's syscall path keeps g there) is inside a crypto/tls call of
 * the same direction, the syscall's socket is that call's. It is checked against the socket read
 * from the tls.Conn, or names it when none could be read (a net.Conn that is not a *net.TCPConn);
 * a write whose plaintext waited for its socket is sent now, before its record leaves. A Read
 * served from crypto/tls's own buffer makes no syscall: nothing is checked then. Kernels before
 * 5.15 (the compat set) have no bpf_task_pt_regs: no cross-check there. */
static __always_inline void go_tls_syscall(struct thread_state *t, __u32 tgid, __u32 fd, __u32 direction)
{
	if (!t->go_tls)
		return;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 g = BPF_CORE_READ(regs, r14);
	if (!g)
		return;
	struct tls_call_key key = tls_goroutine_key(tgid, direction, g);
	struct tls_call *call = tls_running_call(&key);
	if (!call)
		return;
	if (call->fd < 0) {
		call->fd = fd;
		count_go_fd_check(GO_FD_LEARNED);
	} else if (call->fd != (__s32)fd) {
		call->fd = fd;
		count_go_fd_check(GO_FD_MISMATCH);
	} else {
		count_go_fd_check(GO_FD_MATCH);
	}
	if (direction == DIRECTION_EGRESS && call->out_len) {
		__u64 len = call->out_len;
		call->out_len = 0;
		tls_plaintext(tgid, direction, call, len, t, 0);
	}
}
#endif

#endif
