/* GnuTLS (libgnutls: wget and others): gnutls_record_send/gnutls_record_recv. */
#include "common.h"
#include "tls.h"

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
