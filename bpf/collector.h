/* Event layout shared by the eBPF programs and the C# host (src/Collector/Events/EventLayout.cs).
 * Every change here must be mirrored there; tests/Collector.Tests/EventLayoutTests.cs compares
 * sizes and offsets against a C program compiled from this header (native/layout_dump.c). */
#ifndef COLLECTOR_H
#define COLLECTOR_H

/* Bytes of payload one data event can carry. A larger call is split into several events
 * (up to max_chunks_per_call) and the rest is reported as a gap. Power of two: the verifier
 * is shown the bound with a mask. */
#define MAX_DATA_SIZE 16384
#define MAX_COMMS 8
#define COMM_LEN 16

enum event_type {
	EVENT_OPEN = 1,  /* a connection first seen: its addresses and process */
	EVENT_DATA = 2,  /* bytes sent or received on a connection */
	EVENT_CLOSE = 3, /* the fd was closed */
	EVENT_EXEC = 4,  /* a process called exec: user space looks for TLS libraries in it */
	EVENT_EXIT = 5,  /* a process ended: its connections are finished (the kernel closes fds without close()) */
	EVENT_BIND = 6,  /* a TLS session (SSL *) was tied to its socket after its first plaintext was sent */
};

enum event_source {
	SOURCE_SYSCALL = 0,
	SOURCE_OPENSSL = 1,
	SOURCE_GNUTLS = 2,
	SOURCE_GO_TLS = 3, /* Go's crypto/tls (issue 14: its probes are not in the object yet) */
};

/* Direction of bytes as seen by the traced process. */
enum event_direction {
	DIRECTION_EGRESS = 0,  /* the process sent them */
	DIRECTION_INGRESS = 1, /* the process received them */
};

/* How the connection came to be, when the collector saw it happen. */
enum conn_origin {
	ORIGIN_UNKNOWN = 0, /* existed before the collector, or opened by a call not traced */
	ORIGIN_ACCEPT = 1,
	ORIGIN_CONNECT = 2,
};

/* Drop counters, one slot each in the per-CPU array `drop_counters`. */
enum drop_reason {
	DROP_RINGBUF_FULL = 0,      /* events lost because the ring buffer was full */
	DROP_RINGBUF_FULL_BYTES,    /* payload bytes in those events */
	DROP_BEYOND_CAPTURE_BYTES,  /* bytes of a call past max_chunks_per_call * MAX_DATA_SIZE */
	DROP_IOV_SKIPPED,           /* bytes of iovecs and mmsg messages past the walk limit (a gap) */
	DROP_CONN_MAP_FULL,         /* connections not tracked because the map was full */
	DROP_NOT_HTTP_BYTES,        /* bytes of connections judged not HTTP in the kernel */
	DROP_READ_FAILED_BYTES,     /* bytes the kernel could not copy from user memory */
	DROP_SENDFILE_BYTES,        /* bytes sent with sendfile: they never pass through user memory */
	DROP_ACTIVE_CALLS_FULL,     /* calls not followed because the per-thread call map was full, or
				     * TLS calls evicted from tls_calls before their return */
	DROP_TLS_CALLS_OVERLAPPED,  /* TLS calls whose plaintext was lost: another call of the same direction
				     * began on the thread before they returned, and was not nested in them */
	DROP_GO_CONN_NOT_TCP_BYTES, /* plaintext of Go TLS calls on a connection that is not a *net.TCPConn
				     * (a wrapped net.Conn, TLS inside TLS) whose socket no syscall named */
	DROP_GO_BEFORE_ATTACH_BYTES, /* plaintext of Go TLS calls entered before the probes were attached
				      * whose arguments could not be read at their return */
	DROP_COUNTER_COUNT,
};

/* Settings fixed at load time: the only variable in .rodata, so user space writes it at offset 0
 * of the map's initial value (no skeleton needed). */
struct collector_config {
	__u32 collector_tgid;     /* never traced: its own Kafka traffic must not feed back */
	__u32 host_mnt_ns;        /* inode of the host's mount namespace (container detection) */
	__u32 host_pid_ns;        /* inode of the host's pid namespace (container detection) */
	__u8 ringbuf_dynptr;      /* the kernel has ring-buffer dynptrs (5.19): events are filled in the ring */
	__u8 direct_copy_off;     /* BPF_FEATURES_OFF=direct_copy: never the 6.16 kfunc (tests the 5.19 path) */
	__u8 pad0[2];
	__u8 capture_plain;       /* CAPTURE_ALL */
	__u8 capture_tls;         /* CAPTURE_SSL */
	__u8 probe_all_pid;       /* PROBE_ALL_PID */
	__u8 filter_pids;         /* TRACE_PIDS given: only tgids in the trace_pids map */
	__u32 trace_comm_count;   /* TRACE_COMMS given: only these process names */
	__u32 chunk_size;         /* payload bytes per data event, at most MAX_DATA_SIZE */
	__u32 max_chunks_per_call;/* data events per call; the rest is a counted gap */
	__u64 wakeup_bytes;       /* wake user space once this much waits in the ring buffer */
	char trace_comms[MAX_COMMS][COMM_LEN];
};

struct event_header {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u32 type;         /* enum event_type */
	__u32 tgid;
	__u32 fd;
	__u32 generation;   /* changes when an fd number is reused: (tgid, fd, generation) is a connection */
};

struct open_event {
	struct event_header header;
	__u16 family; /* AF_INET or AF_INET6 */
	__u16 local_port;
	__u16 remote_port;
	__u16 origin; /* enum conn_origin */
	__u8 local_addr[16];  /* IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
	char comm[COMM_LEN];  /* the process (group leader) name */
};

struct data_event {
	struct event_header header;
	__u64 position;   /* offset of the first byte within this direction of the connection */
	__u32 call_bytes; /* bytes of the whole call this chunk belongs to */
	__u32 data_len;   /* bytes of payload that follow */
	__u8 direction;   /* enum event_direction */
	__u8 source;      /* enum event_source */
	__u8 pad[6];
	__u64 tls_ctx;    /* TLS library only: the SSL * (or gnutls session); header.fd is UNBOUND_FD
			   * when its socket is not known yet (memory-BIO applications: node, .NET) */
	__u8 data[MAX_DATA_SIZE];
};

#define UNBOUND_FD 0xffffffffu

#define CLOSE_TLS 1            /* the connection carried TLS (ciphertext seen at the syscalls) */
#define CLOSE_TLS_PLAINTEXT 2  /* and its plaintext was seen at a TLS library */

struct close_event {
	struct event_header header;
	__u64 egress_bytes;  /* syscall bytes of the connection, per direction, as the kernel counted */
	__u64 ingress_bytes;
	__u32 flags;         /* CLOSE_* */
	__u32 pad;
};

struct bind_event {
	struct event_header header; /* tgid, fd, generation of the socket */
	__u64 tls_ctx;
};

struct exec_event {
	struct event_header header;
};

#endif
