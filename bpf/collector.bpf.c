// SPDX-License-Identifier: GPL-2.0
/* HTTP capture at the socket syscalls (tracepoints) and at the TLS libraries (uprobes).
 *
 * The kernel this runs on has no kprobes and no fentry, so everything here is a syscall
 * tracepoint or a uprobe. Arguments are saved at sys_enter in the thread's local storage and the
 * data is read at sys_exit, when the byte count is known. Sockets are recognised from the fd table of the
 * task (not from having seen accept/connect), so connections opened before the collector started
 * are captured too. */

/* One translation unit, as OBI/Beyla's tracers are: the parts below are included, not compiled
 * apart and linked, so that the helpers stay inlined into the programs the verifier checks, the
 * static state (the generation counter) has one copy, and the Makefile's two builds (current and
 * COLLECTOR_COMPAT) stay one compile each. Headers hold what several parts use; each .c holds the
 * programs of one source of events.
 *   common.h       headers, the two program sets, limits, settings
 *   maps.h         the shared maps and the values they hold
 *   selection.h    which processes are traced; per-thread state
 *   emit.h         the ring buffer: data events, chunks, positions
 *   conns.h        connections: sockets from the fd table, generations, open events
 *   http_detect.h  is a plaintext connection HTTP
 *   tls.h          TLS sessions and their plaintext
 *   go_tls.h       Go crypto/tls: the socket from a tls.Conn, checked at the syscalls
 *   sockets.c      socket syscall tracepoints
 *   process.c      sched exec/exit tracepoints
 *   openssl.c      OpenSSL uprobes
 *   gnutls.c       GnuTLS uprobes
 *   go_tls.c       Go crypto/tls uprobes (entry and each RET) */
#include "common.h"
#include "maps.h"
#include "selection.h"
#include "emit.h"
#include "conns.h"
#include "http_detect.h"
#include "tls.h"
#include "go_tls.h"
#include "sockets.c"
#include "process.c"
#include "openssl.c"
#include "gnutls.c"
#include "go_tls.c"

#ifndef COLLECTOR_COMPAT
char LICENSE[] SEC("license") = "GPL";
#endif
