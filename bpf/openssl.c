/* OpenSSL (libssl, and programs that link it in: node): SSL_read/SSL_write and their _ex forms,
 * the calls that tie a session to its socket, and SSL_free. */
#include "common.h"
#include "tls.h"

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

