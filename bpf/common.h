/* What every part of the collector's eBPF object shares: the headers, the two program sets of one
 * object (current and compat) and the macros that tell them apart, the limits each set is verified
 * with, and the settings user space writes before load. */
#ifndef COLLECTOR_COMMON_H
#define COLLECTOR_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "collector.h"

/* One object, two sets of the same programs, chosen at load by probing the kernel (the log says
 * which and why):
 * - current (5.17 and later): per-thread state in task storage, loops with bpf_loop;
 * - compat (built with COLLECTOR_COMPAT, programs named *_compat; 5.8 to 5.16, e.g. 5.10): a hash
 *   map keyed by thread id, bounded loops with smaller limits (the verifier walks every iteration),
 *   and no atomic fetch. The Makefile compiles collector.bpf.c twice and links the two objects:
 *   maps are weak (merged), the settings are defined by the current set only. */
#ifdef COLLECTOR_COMPAT
#define PROG(name) name##_compat
#else
#define PROG(name) name
#endif
/* the name argument is expanded before BPF_KPROBE pastes it */
#define PROG_KPROBE(...) BPF_KPROBE(__VA_ARGS__)
#define PROG_KRETPROBE(...) BPF_KRETPROBE(__VA_ARGS__)
#define SHARED_MAP __weak

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2
#ifndef COLLECTOR_COMPAT
#define MAX_CHUNKS_LIMIT 64 /* hard ceiling for max_chunks_per_call */
#define MAX_IOV_WALK 1024   /* iovec entries walked per call (UIO_MAXIOV: all of them; Kestrel writes
			     * a 100 KiB gRPC message as 25+ pipe segments in one sendmsg) */
#define MAX_MMSG_WALK 4     /* messages of sendmmsg/recvmmsg walked per call */
#else
/* without bpf_loop the verifier walks every iteration of every nested loop: smaller walks (what
 * is past them is a counted gap, as ever) */
#define MAX_CHUNKS_LIMIT 16
#define MAX_IOV_WALK 8
#define MAX_MMSG_WALK 2
#endif
#define MAX_MMSG_VLEN 1024  /* UIO_MAXIOV: the most messages one call can carry */
#define TLS_NEST_MAX_STACK (256 * 1024)      /* a nested TLS call is entered this close below the running one */
#define TLS_NEST_MAX_NS (10ULL * 1000000000) /* ... and this soon after it began */

#ifdef COLLECTOR_COMPAT
extern const volatile struct collector_config settings;
#else
const volatile struct collector_config settings = {
	.capture_plain = 1,
	.capture_tls = 1,
	.chunk_size = MAX_DATA_SIZE,
	.max_chunks_per_call = 8,
	.wakeup_bytes = 128 * 1024,
};
#endif

/* bpf_loop(n, fn, ctx) where the kernel has it (5.17); before it, a bounded loop that the
 * verifier walks (n is bounded by the callers' constants) */
#ifndef COLLECTOR_COMPAT
#define LOOP(n, fn, ctx) bpf_loop((n), (fn), (ctx), 0)
#else
#define LOOP(n, fn, ctx)                                                                                \
	do {                                                                                            \
		for (__u32 __i = 0; __i < (n); __i++)                                                   \
			if ((fn)(__i, (ctx)))                                                           \
				break;                                                                  \
	} while (0)
#endif

#endif
