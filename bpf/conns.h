/* Connections: a TCP socket recognised from the task's fd table, tracked under (tgid, fd) with a
 * generation that tells reuses of the fd apart, and announced to user space by an open event. */
#ifndef COLLECTOR_CONNS_H
#define COLLECTOR_CONNS_H

#include "maps.h"
#include "emit.h"

#ifdef COLLECTOR_COMPAT
/* Connection generations per CPU (an atomic fetch-and-add needs 5.12) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} generations_compat SEC(".maps");
#else
static __u32 next_generation = 0;
#endif

/* A fresh generation for a connection: (tgid, fd, generation) names it, so it only has to differ
 * from the earlier connections on the same fd. Never 0. */
static __always_inline __u32 new_generation(void)
{
#ifndef COLLECTOR_COMPAT
	return __sync_fetch_and_add(&next_generation, 1) + 1;
#else
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(&generations_compat, &zero);
	if (!n)
		return 1;
	*n += 1;
	/* the CPU in the low bits keeps CPUs apart (up to 1024); the count wraps after 2^22 on one CPU */
	__u32 g = (*n << 10) | (bpf_get_smp_processor_id() & 0x3ff);
	return g ? g : 1;
#endif
}

/* The TCP socket behind fd in the current task, or NULL. */
static __always_inline struct sock *tcp_sock_of_fd(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	if (fd >= max_fds)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	if (!file)
		return NULL;
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	__u16 protocol = BPF_CORE_READ(sk, sk_protocol);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6))
		return NULL;
	return sk;
}

static __always_inline void emit_open(struct conn_key *key, struct conn_state *st, struct sock *sk,
				      __u16 origin)
{
	struct open_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL, 1);
		return;
	}
	e->header.timestamp_ns = bpf_ktime_get_ns();
	e->header.type = EVENT_OPEN;
	e->header.tgid = key->tgid;
	e->header.fd = key->fd;
	e->header.generation = st->generation;
	e->origin = origin;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
	__builtin_memset(e->remote_addr, 0, sizeof(e->remote_addr));
	if (family == AF_INET) {
		bpf_core_read(e->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->remote_addr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(e->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->remote_addr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
	bpf_ringbuf_submit(e, ringbuf_flags(sizeof(*e)));
}

/* Starts tracking (tgid, fd) as a new connection with a fresh generation. */
static __always_inline struct conn_state *track_conn(struct conn_key *key, struct sock *sk, __u16 origin)
{
	struct conn_state st = {};
	st.generation = new_generation();
	if (origin == ORIGIN_UNKNOWN)
		st.flags = CONN_PREEXISTING;
	if (bpf_map_update_elem(&conns, key, &st, BPF_ANY) != 0) {
		count_drop(DROP_CONN_MAP_FULL, 1);
		return NULL;
	}
	struct conn_state *stored = bpf_map_lookup_elem(&conns, key);
	if (stored)
		emit_open(key, stored, sk, origin);
	return stored;
}

/* The tracked connection behind fd, tracking it now if it is a TCP socket first seen. */
static __always_inline struct conn_state *conn_of_fd(__u32 tgid, __u32 fd)
{
	struct conn_key key = {.tgid = tgid, .fd = fd};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (st)
		return st;
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return NULL;
	return track_conn(&key, sk, ORIGIN_UNKNOWN);
}
#endif
